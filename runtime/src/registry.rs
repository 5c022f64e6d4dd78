//! Images from OCI registries: `image: localhost:5000/hello:v1` is pulled
//! with the OCI distribution API (the `oci-client` crate) into a local,
//! content-addressed store, and then runs like an image on disk.
//!
//! A reference names a registry when its first component is a host: it has
//! a `.` or a `:`, or is `localhost` (`ghcr.io/org/app:v1`,
//! `localhost:5000/hello@sha256:…`, `docker.io/library/python:3.12`). A bare
//! `name[:tag]` stays a local image folder (see `image`): wpod never turns
//! it into a Docker Hub pull behind the user's back.
//!
//! Two flavours run:
//! - **Wasm OCI artifacts** (the CNCF layout of `oci-wasm`: config
//!   `application/vnd.wasm.config.v0+json`, one `application/wasm` layer;
//!   also the older `application/vnd.wasm.content.layer.v1+wasm`,
//!   runwasi's `application/vnd.module.wasm.content.layer.v1+wasm` and
//!   `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`): the
//!   layer is the program. Several Wasm layers are refused (which one is
//!   the program is not said by the format).
//! - **`wasi/wasm` platform images** (`docker buildx --platform wasi/wasm`):
//!   rootfs tar layers (plain or gzip, whiteouts applied), unpacked into an
//!   image folder of the shape `image` already runs (`image.json` with the
//!   config's `Entrypoint`, `Cmd`, `Env`, `WorkingDir`, and `rootfs/`).
//!
//! An index is narrowed to the entry for `wasi/wasm`, `wasip1/wasm` or
//! `wasip2/wasm`; an image for another platform is refused, naming the
//! platforms it offers.
//!
//! The store (`$XDG_DATA_HOME/wpod/store`, else
//! `~/.local/share/wpod/store`): `blobs/sha256/<hex>` (each verified against
//! its digest while it downloads, written under a temporary name and renamed
//! into place), `images/<manifest hex>/` (an unpacked rootfs image, made
//! aside and renamed), and `refs/<hex of the reference>.json` naming the
//! manifest's digest. A pull that is killed leaves only temporary names,
//! which nothing reads and `prune` removes; two pulls of one image write
//! the same content under the same names. Pulls hold the store's lock
//! shared, `prune` (and `remove`) exclusive.

use crate::manifest::{PodSpec, PullPolicy};
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Layer media types of a Wasm program.
const WASM_LAYERS: [&str; 4] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

/// Operating systems of a Wasm platform (with architecture `wasm`).
const WASM_OSES: [&str; 3] = ["wasi", "wasip1", "wasip2"];

/// Hears how a pull's downloads go (the CLI draws a line per layer on a
/// terminal). Called from the pulling task; keep it quick.
pub trait PullProgress: std::fmt::Debug + Send + Sync {
    /// `digest` (`total` bytes) of `reference` starts downloading.
    fn started(&self, reference: &str, digest: &str, total: u64);
    /// `bytes` more of `digest` arrived.
    fn advanced(&self, digest: &str, bytes: u64);
    /// `digest` is whole (verified), or failed.
    fn finished(&self, digest: &str);
}

/// Where pulled images live, and how registries are reached.
#[derive(Debug, Clone)]
pub struct Registries {
    /// The store's folder.
    pub store: PathBuf,
    /// Registries (`host[:port]`) reached over plain HTTP besides those on
    /// loopback (`localhost`, `127.0.0.0/8`, `::1`), as podman's
    /// `--tls-verify=false`.
    pub insecure: Vec<String>,
    /// Never pull: only what the store has runs (set behind the OS wall,
    /// whose pulls were made before it went up).
    pub offline: bool,
    /// Told how downloads go.
    pub progress: Option<std::sync::Arc<dyn PullProgress>>,
}

impl Default for Registries {
    /// The user's store, and plain HTTP for loopback registries only.
    fn default() -> Registries {
        Registries {
            store: crate::image::user_data_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("wpod")
                .join("store"),
            insecure: Vec::new(),
            offline: false,
            progress: None,
        }
    }
}

/// Pulls what the containers of `pods` need from registries, each as its
/// pull policy says, all at once; nothing when `registries.offline`. The
/// first failure is returned, naming the pod, container and field.
pub(crate) async fn pull_for(pods: &[PodSpec], registries: &Registries) -> crate::Result<()> {
    if registries.offline {
        return Ok(());
    }
    let store = ImageStore::new(&registries.store);
    let mut pulls = tokio::task::JoinSet::new();
    let mut asked: Vec<String> = Vec::new();
    for pod in pods {
        for container in pod.all_containers() {
            if !is_registry_reference(&container.image) || asked.contains(&container.image) {
                continue;
            }
            let needed = match container.pull_policy() {
                PullPolicy::Always => true,
                PullPolicy::IfNotPresent => store.lookup(&container.image).is_none(),
                PullPolicy::Never => false,
            };
            if !needed {
                continue;
            }
            asked.push(container.image.clone());
            let (store, registries) = (store.clone(), registries.clone());
            let (pod, container) = (pod.clone(), container.clone());
            pulls.spawn(async move {
                let pulled = store.pull(&container.image, &registries).await;
                match pulled {
                    Ok(image) => {
                        tracing::info!(image = %image.reference, digest = %image.digest, flavour = %image.flavour, "pulled");
                        Ok(())
                    }
                    Err(error) => {
                        let spec = pod
                            .all_containers()
                            .find(|c| c.name == container.name)
                            .expect("the container is the pod's");
                        Err(crate::pod::image_error(&pod, spec, error.into()))
                    }
                }
            });
        }
    }
    while let Some(done) = pulls.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(panic) => {
                return Err(crate::Error::Engine(format!(
                    "an image pull failed: {panic}"
                )));
            }
        }
    }
    Ok(())
}

/// Pushes the Wasm program `wasm` to `reference` as a Wasm OCI artifact in
/// the CNCF layout (config `application/vnd.wasm.config.v0+json` naming
/// `wasm/wasip1` or `wasm/wasip2`, one `application/wasm` layer), as
/// `oras push` or `wkg oci push` would; returns the manifest's digest.
pub async fn push_wasm(
    wasm: &Path,
    reference: &str,
    registries: &Registries,
) -> Result<String, PullError> {
    use oci_client::client::{Config, ImageLayer};
    let parsed = parse(reference)?;
    let registry = parsed.resolve_registry().to_owned();
    let bytes = std::fs::read(wasm).map_err(|source| PullError::Store {
        reference: reference.into(),
        path: wasm.to_owned(),
        source,
    })?;
    let os = crate::image::wasi_os(&bytes).map_err(|what| PullError::Unsupported {
        reference: reference.into(),
        problem: format!("{} is {what}, not a WebAssembly program", wasm.display()),
    })?;
    let layer = ImageLayer::new(bytes, "application/wasm".into(), None);
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": os,
        "layerDigests": [layer.sha256_digest()],
    });
    let config = Config::new(
        serde_json::to_vec(&config).expect("the config serializes"),
        "application/vnd.wasm.config.v0+json".into(),
        None,
    );
    let client = client_for(&registry, registries);
    let auth = auth_for(&registry);
    let failed = |error| registry_failure(reference, &registry, error);
    let layers = [layer];
    let manifest = OciImageManifest::build(&layers, &config, None);
    client
        .push(&parsed, &layers, config, &auth, Some(manifest))
        .await
        .map_err(failed)?;
    client
        .fetch_manifest_digest(&parsed, &auth)
        .await
        .map_err(failed)
}

/// What `wpod validate` checks on this host besides the images, without
/// changing anything: each hostPath of type `Directory` or `File` is there
/// (an error); each hostPort can be bound now (if not, a warning: it may
/// be free by the time the pod runs).
///
/// # Errors
///
/// The first hostPath that is not there or is the wrong kind.
pub fn check_host(pods: &[PodSpec]) -> crate::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for pod in pods {
        crate::volume::check_host_paths(pod).map_err(|e| crate::Error::volume(pod, e))?;
        for port in crate::network::published_ports(pod) {
            if let Err(error) = crate::network::reserve(port.host) {
                warnings.push(format!(
                    "(pod `{}`) {}: hostPort {} cannot be bound now ({error}); `wpod run` will fail unless it is free by then",
                    pod.name, port.field, port.host
                ));
            }
        }
    }
    Ok(warnings)
}

/// Checks that every container image of `pods` resolves, without running
/// or pulling anything: a local image is found and its program too; an
/// image from a registry has a manifest there for a Wasm platform (its
/// config is read when its layers do not say). The first failure, naming
/// the pod, container and field.
pub async fn check_images(
    pods: &[PodSpec],
    image_path: &crate::ImagePath,
    registries: &Registries,
) -> crate::Result<()> {
    for pod in pods {
        for container in pod.all_containers() {
            let failed = |error: crate::ImageError| crate::pod::image_error(pod, container, error);
            if is_registry_reference(&container.image) {
                check_remote(&container.image, registries)
                    .await
                    .map_err(|e| failed(e.into()))?;
                continue;
            }
            crate::pod::resolve_container(pod, container, &pod.base_dir, image_path, registries)?;
        }
    }
    Ok(())
}

/// The digest of the Wasm image `reference` names in its registry, or why
/// it has none (see [`check_images`]).
async fn check_remote(reference: &str, registries: &Registries) -> Result<String, PullError> {
    let parsed = parse(reference)?;
    let registry = parsed.resolve_registry().to_owned();
    let client = client_for(&registry, registries);
    let auth = auth_for(&registry);
    let failed = |error| registry_failure(reference, &registry, error);
    let store = ImageStore::new(&registries.store);
    let (manifest, digest) = store
        .manifest(&client, &parsed, &auth, reference)
        .await
        .map_err(|e| e.into_pull(&failed, reference))?;
    let wasm_layers = manifest
        .layers
        .iter()
        .filter(|l| WASM_LAYERS.contains(&l.media_type.as_str()))
        .count();
    if wasm_layers > 1 {
        return Err(PullError::Unsupported {
            reference: reference.into(),
            problem: format!("{wasm_layers} Wasm layers; wpod runs an artifact of one"),
        });
    }
    if wasm_layers == 0 {
        let mut config = Vec::new();
        client
            .pull_blob(&parsed, &manifest.config, &mut config)
            .await
            .map_err(failed)?;
        let config: ImageConfigFile =
            serde_json::from_slice(&config).map_err(|e| PullError::Unsupported {
                reference: reference.into(),
                problem: format!("its image config is not an OCI image config: {e}"),
            })?;
        if config.architecture != "wasm" || !WASM_OSES.contains(&config.os.as_str()) {
            return Err(PullError::NotWasm {
                reference: reference.into(),
                offered: format!("{}/{}", config.os, config.architecture),
            });
        }
    }
    Ok(digest)
}

/// Whether `image` names a registry (see the module docs).
pub fn is_registry_reference(image: &str) -> bool {
    let Some((first, _)) = image.split_once('/') else {
        return false;
    };
    !image.ends_with(".wasm")
        && !first.is_empty()
        && (first.contains('.') || first.contains(':') || first == "localhost")
        && !matches!(first, "." | "..")
}

/// What a pulled image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// A Wasm OCI artifact: the layer is the program.
    WasmArtifact,
    /// A `wasi/wasm` platform image: an unpacked root filesystem.
    Rootfs,
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavour::WasmArtifact => "wasm artifact",
            Flavour::Rootfs => "wasi/wasm rootfs",
        })
    }
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    /// The reference as pulled (`localhost:5000/hello:v1`).
    pub reference: String,
    /// The digest of its image manifest.
    pub digest: String,
    pub flavour: Flavour,
    /// The bytes of its config and layers.
    pub size: u64,
    /// The program (an artifact's layer), or the image folder (a rootfs
    /// image's `image.json` and `rootfs/`).
    pub path: PathBuf,
}

/// Why a pull failed. Each names the reference.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(
        "image `{reference}`: the registry {registry} refused the credentials, or asked for some: {message}; log in as Docker or podman do (`auths` in ~/.docker/config.json, $DOCKER_CONFIG/config.json or $REGISTRY_AUTH_FILE)"
    )]
    Unauthorized {
        reference: String,
        registry: String,
        message: String,
    },
    #[error(
        "image `{reference}`: not a valid reference: {message}; write [registry[:port]/]repository[:tag][@sha256:digest]"
    )]
    Reference { reference: String, message: String },
    #[error(
        "image `{reference}`: from the registry {registry}: {message}; check the reference, and that the registry is reachable"
    )]
    Registry {
        reference: String,
        registry: String,
        message: String,
    },
    #[error(
        "image `{reference}`: is not a WebAssembly image: it is for {offered}; wpod runs images for wasi/wasm (and wasip1/wasm, wasip2/wasm) and Wasm OCI artifacts"
    )]
    NotWasm { reference: String, offered: String },
    #[error("image `{reference}`: {problem}")]
    Unsupported { reference: String, problem: String },
    #[error(
        "image `{reference}`: the manifest's digest is {actual}, not the {expected} asked for; the registry's content does not match the reference"
    )]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("image `{reference}`: the store at {}: {source}", path.display())]
    Store {
        reference: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The local store of pulled images.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct RefRecord {
    reference: String,
    digest: String,
    flavour: Flavour,
    size: u64,
    /// Relative to the store.
    path: PathBuf,
    /// The blobs it uses (what `remove` and `prune` keep while it is here).
    #[serde(default)]
    blobs: Vec<String>,
}

/// What `remove` or `prune` took out of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Blobs and unpacked images removed.
    pub entries: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The store's lock (`lock` in the store): pulls hold it shared, `prune`
/// exclusive, so that a prune never takes what a running pull wrote and has
/// not recorded yet. Unix only (`flock`); elsewhere nothing is locked.
#[derive(Debug)]
struct StoreLock {
    _file: Option<std::fs::File>,
}

impl StoreLock {
    fn take(root: &Path, exclusive: bool) -> std::io::Result<StoreLock> {
        std::fs::create_dir_all(root)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))?;
        #[cfg(unix)]
        {
            use rustix::fs::{FlockOperation, flock};
            let operation = if exclusive {
                FlockOperation::LockExclusive
            } else {
                FlockOperation::LockShared
            };
            flock(&file, operation)?;
        }
        #[cfg(not(unix))]
        let _ = exclusive;
        Ok(StoreLock { _file: Some(file) })
    }
}

impl ImageStore {
    pub fn new(root: impl Into<PathBuf>) -> ImageStore {
        ImageStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's record of `reference` (which may not exist).
    pub(crate) fn ref_file(&self, reference: &str) -> PathBuf {
        let key = hex::encode(Sha256::digest(canonical(reference).as_bytes()));
        self.root.join("refs").join(format!("{key}.json"))
    }

    fn blob(&self, digest: &str) -> PathBuf {
        let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        self.root.join("blobs").join(algorithm).join(hex)
    }

    /// The image `reference` names, if it was pulled and is whole.
    pub fn lookup(&self, reference: &str) -> Option<StoredImage> {
        let bytes = std::fs::read(self.ref_file(reference)).ok()?;
        let record: RefRecord = serde_json::from_slice(&bytes).ok()?;
        let image = StoredImage {
            reference: record.reference,
            digest: record.digest,
            flavour: record.flavour,
            size: record.size,
            path: self.root.join(record.path),
        };
        image.path.exists().then_some(image)
    }

    /// Every image in the store, by reference.
    pub fn list(&self) -> Vec<StoredImage> {
        let Ok(entries) = std::fs::read_dir(self.root.join("refs")) else {
            return Vec::new();
        };
        let mut images: Vec<StoredImage> = entries
            .flatten()
            .filter_map(|entry| {
                let record: RefRecord =
                    serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
                self.lookup(&record.reference)
            })
            .collect();
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        images
    }

    /// Puts the Wasm program `wasm` (bytes an embedder holds: built, fetched
    /// its own way, embedded) in the store as the artifact `reference`, as
    /// a pull would leave it, so that pods run it by that reference (with
    /// `imagePullPolicy: IfNotPresent` or `Never`, it is never pulled).
    pub fn import_wasm(&self, reference: &str, wasm: &[u8]) -> Result<StoredImage, PullError> {
        let store_error = |path: &Path| {
            let path = path.to_owned();
            move |source| PullError::Store {
                reference: reference.into(),
                path,
                source,
            }
        };
        crate::image::wasi_os(wasm).map_err(|what| PullError::Unsupported {
            reference: reference.into(),
            problem: format!("the bytes given are {what}, not a WebAssembly program"),
        })?;
        parse(reference)?;
        let _lock = StoreLock::take(&self.root, false).map_err(store_error(&self.root))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(wasm)));
        let blob = self.blob(&digest);
        if !blob.exists() {
            write_atomically(&blob, wasm).map_err(store_error(&blob))?;
        }
        // No manifest: the program's own digest names it.
        self.record(
            reference,
            digest.clone(),
            Flavour::WasmArtifact,
            wasm.len() as u64,
            blob,
            vec![digest],
        )
    }

    /// Removes `reference` from the store, and what no other reference
    /// uses (see [`ImageStore::prune`]); `None` if the store does not have
    /// it.
    pub fn remove(
        &self,
        reference: &str,
        cache_dir: Option<&Path>,
    ) -> std::io::Result<Option<Pruned>> {
        match std::fs::remove_file(self.ref_file(reference)) {
            Ok(()) => self.prune(cache_dir).map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Removes the blobs and unpacked images no reference uses, what killed
    /// pulls left, and the entries of the compile cache at `cache_dir`
    /// compiled from them; waits for pulls running now to finish.
    pub fn prune(&self, cache_dir: Option<&Path>) -> std::io::Result<Pruned> {
        let _lock = StoreLock::take(&self.root, true)?;
        let mut used = std::collections::HashSet::new();
        if let Ok(entries) = std::fs::read_dir(self.root.join("refs")) {
            for entry in entries.flatten() {
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                let Ok(record) = serde_json::from_slice::<RefRecord>(&bytes) else {
                    continue;
                };
                used.insert(hex_of(&record.digest).to_owned());
                used.extend(record.blobs.iter().map(|b| hex_of(b).to_owned()));
            }
        }
        let mut pruned = Pruned::default();
        let mut programs = Vec::new();
        for folder in [
            self.root.join("blobs").join("sha256"),
            self.root.join("images"),
        ] {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Under the exclusive lock no pull runs: a temporary name is
                // what a killed one left.
                if used.contains(&name) && !name.starts_with(".tmp-") {
                    continue;
                }
                let path = entry.path();
                let bytes = disk_bytes(&path);
                // The programs the compile cache may hold: a blob is one;
                // an image's are files in its rootfs.
                programs.extend(files_in(&path));
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if removed.is_ok() {
                    pruned.entries += 1;
                    pruned.bytes += bytes;
                }
            }
        }
        if let Some(cache_dir) = cache_dir {
            let (entries, bytes) = crate::image::forget_cached(cache_dir, &programs);
            pruned.entries += entries;
            pruned.bytes += bytes;
        }
        Ok(pruned)
    }

    /// Pulls `reference` from its registry into the store (what the store
    /// has already is not downloaded again).
    pub async fn pull(
        &self,
        reference: &str,
        registries: &Registries,
    ) -> Result<StoredImage, PullError> {
        let parsed = parse(reference)?;
        let registry = parsed.resolve_registry().to_owned();
        let store_error = |path: &Path| {
            let path = path.to_owned();
            let reference = reference.to_owned();
            move |source| PullError::Store {
                reference,
                path,
                source,
            }
        };
        let registry_error = |error| registry_failure(reference, &registry, error);
        let client = client_for(&registry, registries);
        let auth = auth_for(&registry);
        let _lock = StoreLock::take(&self.root, false).map_err(store_error(&self.root))?;
        let (manifest, digest) = self
            .manifest(&client, &parsed, &auth, reference)
            .await
            .map_err(|e| e.into_pull(&registry_error, reference))?;
        let wasm_layers: Vec<&OciDescriptor> = manifest
            .layers
            .iter()
            .filter(|l| WASM_LAYERS.contains(&l.media_type.as_str()))
            .collect();
        let size = manifest.config.size.max(0) as u64
            + manifest
                .layers
                .iter()
                .map(|l| l.size.max(0) as u64)
                .sum::<u64>();
        let mut blobs = Vec::new();
        let (flavour, path) = match wasm_layers[..] {
            [layer] => {
                let blob = self
                    .fetch_blob(&client, &parsed, layer, registries.progress.as_deref())
                    .await
                    .map_err(|e| e.into_pull(&registry_error, reference))?;
                blobs.push(layer.digest.clone());
                (Flavour::WasmArtifact, blob)
            }
            [] => {
                let config = self
                    .fetch_blob(
                        &client,
                        &parsed,
                        &manifest.config,
                        registries.progress.as_deref(),
                    )
                    .await
                    .map_err(|e| e.into_pull(&registry_error, reference))?;
                blobs.push(manifest.config.digest.clone());
                let config: ImageConfigFile =
                    serde_json::from_slice(&std::fs::read(&config).map_err(store_error(&config))?)
                        .map_err(|e| PullError::Unsupported {
                            reference: reference.into(),
                            problem: format!("its image config is not an OCI image config: {e}"),
                        })?;
                let platform = format!("{}/{}", config.os, config.architecture);
                if config.architecture != "wasm" || !WASM_OSES.contains(&config.os.as_str()) {
                    return Err(PullError::NotWasm {
                        reference: reference.into(),
                        offered: platform,
                    });
                }
                let mut layers = Vec::new();
                for layer in &manifest.layers {
                    let gzip = match layer.media_type.as_str() {
                        oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE
                        | oci_client::manifest::IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE => false,
                        oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE
                        | oci_client::manifest::IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE => true,
                        other => {
                            return Err(PullError::Unsupported {
                                reference: reference.into(),
                                problem: format!(
                                    "a layer of media type `{other}`, neither a Wasm program nor a rootfs tar"
                                ),
                            });
                        }
                    };
                    let blob = self
                        .fetch_blob(&client, &parsed, layer, registries.progress.as_deref())
                        .await
                        .map_err(|e| e.into_pull(&registry_error, reference))?;
                    layers.push((blob, gzip));
                    blobs.push(layer.digest.clone());
                }
                let folder = self.root.join("images").join(hex_of(&digest));
                if !folder.exists() {
                    let image_json = serde_json::json!({ "config": config.config });
                    unpack(&folder, &image_json, &layers).map_err(store_error(&folder))?;
                }
                (Flavour::Rootfs, folder)
            }
            _ => {
                return Err(PullError::Unsupported {
                    reference: reference.into(),
                    problem: format!(
                        "{} Wasm layers; wpod runs an artifact of one (which layer is the program is not said)",
                        wasm_layers.len()
                    ),
                });
            }
        };
        self.record(reference, digest, flavour, size, path, blobs)
    }

    /// Writes the store's record of `reference` (after everything it names).
    fn record(
        &self,
        reference: &str,
        digest: String,
        flavour: Flavour,
        size: u64,
        path: PathBuf,
        blobs: Vec<String>,
    ) -> Result<StoredImage, PullError> {
        let record = RefRecord {
            reference: canonical(reference),
            digest: digest.clone(),
            flavour,
            size,
            path: path.strip_prefix(&self.root).unwrap_or(&path).to_owned(),
            blobs,
        };
        let ref_file = self.ref_file(reference);
        let json = serde_json::to_vec_pretty(&record).expect("a ref record serializes");
        write_atomically(&ref_file, &json).map_err(|source| PullError::Store {
            reference: reference.into(),
            path: ref_file.clone(),
            source,
        })?;
        Ok(StoredImage {
            reference: record.reference,
            digest,
            flavour,
            size,
            path,
        })
    }

    /// The image manifest of `reference`, an index narrowed to the Wasm
    /// platform; with its digest, checked against a pinned one.
    async fn manifest(
        &self,
        client: &oci_client::Client,
        reference: &Reference,
        auth: &RegistryAuth,
        text: &str,
    ) -> Result<(OciImageManifest, String), Failure> {
        let accepted = [
            oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
            oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
            oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
            oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        ];
        let (bytes, _) = client
            .pull_manifest_raw(reference, auth, &accepted)
            .await
            .map_err(Failure::Registry)?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if let Some(expected) = reference.digest()
            && expected != digest
        {
            return Err(Failure::Pull(PullError::DigestMismatch {
                reference: text.into(),
                expected: expected.into(),
                actual: digest,
            }));
        }
        let manifest: OciManifest = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Pull(PullError::Unsupported {
                reference: text.into(),
                problem: format!("its manifest is neither an image manifest nor an index: {e}"),
            })
        })?;
        match manifest {
            OciManifest::Image(image) => Ok((image, digest)),
            OciManifest::ImageIndex(index) => {
                let chosen = index.manifests.iter().find(|entry| {
                    entry.platform.as_ref().is_some_and(|p| {
                        p.architecture.to_string() == "wasm"
                            && WASM_OSES.contains(&p.os.to_string().as_str())
                    })
                });
                let Some(chosen) = chosen else {
                    let offered: Vec<String> = index
                        .manifests
                        .iter()
                        .filter_map(|e| e.platform.as_ref())
                        .map(|p| format!("{}/{}", p.os, p.architecture))
                        .collect();
                    return Err(Failure::Pull(PullError::NotWasm {
                        reference: text.into(),
                        offered: if offered.is_empty() {
                            "no platform it names".into()
                        } else {
                            offered.join(", ")
                        },
                    }));
                };
                let pinned = reference.clone_with_digest(chosen.digest.clone());
                let (image, digest) = Box::pin(self.manifest(client, &pinned, auth, text)).await?;
                Ok((image, digest))
            }
        }
    }

    /// A blob in the store, downloaded (and verified) if missing.
    async fn fetch_blob(
        &self,
        client: &oci_client::Client,
        reference: &Reference,
        descriptor: &OciDescriptor,
        progress: Option<&dyn PullProgress>,
    ) -> Result<PathBuf, Failure> {
        let path = self.blob(&descriptor.digest);
        if path.exists() {
            return Ok(path);
        }
        let folder = path.parent().expect("a blob has a folder");
        let store = |source| Failure::Store(path.clone(), source);
        std::fs::create_dir_all(folder).map_err(store)?;
        let temporary = temporary_name(&path);
        let file = tokio::fs::File::create(&temporary).await.map_err(store)?;
        let digest = descriptor.digest.as_str();
        if let Some(progress) = progress {
            progress.started(&reference.whole(), digest, descriptor.size.max(0) as u64);
        }
        let counted = Counted {
            inner: file,
            progress,
            digest,
        };
        let pulled = client.pull_blob(reference, descriptor, counted).await;
        if let Some(progress) = progress {
            progress.finished(digest);
        }
        if let Err(error) = pulled {
            let _ = std::fs::remove_file(&temporary);
            return Err(Failure::Registry(error));
        }
        std::fs::rename(&temporary, &path).map_err(store)?;
        Ok(path)
    }
}

/// A writer that tells [`PullProgress`] what passes through it.
struct Counted<'a, W> {
    inner: W,
    progress: Option<&'a dyn PullProgress>,
    digest: &'a str,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (std::task::Poll::Ready(Ok(n)), Some(progress)) = (&written, self.progress) {
            progress.advanced(self.digest, *n as u64);
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The part of an OCI image config file that decides and runs the image.
#[derive(Deserialize)]
struct ImageConfigFile {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: serde_json::Value,
}

/// What went wrong below `pull`, before it names the reference.
enum Failure {
    Registry(oci_client::errors::OciDistributionError),
    Store(PathBuf, std::io::Error),
    Pull(PullError),
}

impl Failure {
    fn into_pull(
        self,
        registry: &impl Fn(oci_client::errors::OciDistributionError) -> PullError,
        reference: &str,
    ) -> PullError {
        match self {
            Failure::Registry(error) => registry(error),
            Failure::Store(path, source) => PullError::Store {
                reference: reference.into(),
                path,
                source,
            },
            Failure::Pull(error) => error,
        }
    }
}

/// What the registry (or the way to it) said, as a `PullError`.
fn registry_failure(
    reference: &str,
    registry: &str,
    error: oci_client::errors::OciDistributionError,
) -> PullError {
    use oci_client::errors::OciDistributionError as E;
    let message = error_text(&error);
    let (reference, registry) = (reference.to_owned(), registry.to_owned());
    match error {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => PullError::Unauthorized {
            reference,
            registry,
            message,
        },
        _ => PullError::Registry {
            reference,
            registry,
            message,
        },
    }
}

/// A client for `registry`: HTTPS (rustls) unless it is on loopback or
/// listed insecure; indexes are narrowed by wpod, not by the client.
fn client_for(registry: &str, registries: &Registries) -> oci_client::Client {
    // rustls needs its crypto chosen once per process: ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain_http(registry, registries)),
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        ..ClientConfig::default()
    })
}

/// `reference` as oci-client takes it (Docker's defaults filled in).
fn parse(reference: &str) -> Result<Reference, PullError> {
    canonical(reference)
        .parse()
        .map_err(|e: oci_client::ParseError| PullError::Reference {
            reference: reference.into(),
            message: e.to_string(),
        })
}

/// The reference as the store keys it.
fn canonical(reference: &str) -> String {
    reference.trim().to_owned()
}

fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, hex)| hex)
}

/// The registries reached over plain HTTP: `registry` itself when it is on
/// loopback, and those the user listed.
fn plain_http(registry: &str, registries: &Registries) -> Vec<String> {
    let mut plain = registries.insecure.clone();
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map_or(registry, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        plain.push(registry.to_owned());
    }
    plain
}

/// Credentials for `registry` from the files Docker and podman keep:
/// `$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
/// `~/.docker/config.json` (their `auths.<registry>.auth`, base64 of
/// `user:password`); anonymous without.
fn auth_for(registry: &str) -> RegistryAuth {
    use base64::Engine as _;
    let mut files = Vec::new();
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        files.push(PathBuf::from(dir).join("config.json"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        files.push(PathBuf::from(home).join(".docker").join("config.json"));
    }
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            tracing::warn!(file = %file.display(), "not a registry credentials file (JSON); ignored");
            continue;
        };
        let auths = &config["auths"];
        let entry = [
            registry.to_owned(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
        .iter()
        .map(|key| &auths[key])
        .find(|entry| !entry.is_null());
        let Some(encoded) = entry.and_then(|e| e["auth"].as_str()) else {
            continue;
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            return RegistryAuth::Basic(user.into(), password.into());
        }
    }
    RegistryAuth::Anonymous
}

/// The registry's error as one line: its cause chain, each cause once.
fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A name beside `path` that nothing reads: `.tmp-<pid>-<name>`.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// The regular files at `path`: itself, or those anywhere in it.
fn files_in(path: &Path) -> Vec<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|entry| files_in(&entry.path()))
            .collect(),
        Ok(meta) if meta.is_file() => vec![path.to_owned()],
        _ => Vec::new(),
    }
}

/// The bytes of a file, or of everything in a folder.
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| disk_bytes(&entry.path()))
        .sum()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = temporary_name(path);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Unpacks rootfs `layers` (tar files, gzip or not, in order) into
/// `folder/rootfs` with `image.json` beside it: made under a temporary name
/// and renamed into place.
fn unpack(
    folder: &Path,
    image_json: &serde_json::Value,
    layers: &[(PathBuf, bool)],
) -> std::io::Result<()> {
    let temporary = temporary_name(folder);
    let _ = std::fs::remove_dir_all(&temporary);
    let rootfs = temporary.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    for (layer, gzip) in layers {
        let file = std::fs::File::open(layer)?;
        let reader: Box<dyn std::io::Read> = if *gzip {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        apply_layer(&rootfs, reader)?;
    }
    std::fs::write(
        temporary.join("image.json"),
        serde_json::to_vec_pretty(image_json).expect("image.json serializes"),
    )?;
    match std::fs::rename(&temporary, folder) {
        Ok(()) => Ok(()),
        // Another pull of the same image got there first: the same content.
        Err(_) if folder.join("image.json").exists() => {
            let _ = std::fs::remove_dir_all(&temporary);
            Ok(())
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&temporary);
            Err(error)
        }
    }
}

/// One layer onto `rootfs`: whiteouts (`.wh.NAME` removes NAME,
/// `.wh..wh..opq` empties its folder) applied, then regular files, folders,
/// symlinks and hard links unpacked, with their rwx bits only; device nodes
/// and the like skipped.
/// `tar` refuses entries that would land outside `rootfs` (`..`, absolute
/// paths, through symlinks).
fn apply_layer(rootfs: &Path, reader: impl std::io::Read) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    // rwx bits only: no setuid or setgid file of an image lands on the host
    // (the pod sees the rootfs nosuid anyway), and the files are the user's.
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = path.parent().unwrap_or(Path::new(""));
            if safe_relative(parent) {
                let target = rootfs.join(parent);
                if hidden == ".wh..opq" {
                    if let Ok(entries) = std::fs::read_dir(&target) {
                        for child in entries.flatten() {
                            let _ = std::fs::remove_dir_all(child.path())
                                .or_else(|_| std::fs::remove_file(child.path()));
                        }
                    }
                } else if safe_relative(Path::new(hidden)) {
                    let gone = target.join(hidden);
                    let _ = std::fs::remove_dir_all(&gone).or_else(|_| std::fs::remove_file(&gone));
                }
            }
            continue;
        }
        use tar::EntryType;
        match entry.header().entry_type() {
            EntryType::Regular
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Continuous
            | EntryType::GNUSparse => {
                entry.unpack_in(rootfs)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A relative path with no `..`: a whiteout may only name what is inside.
fn safe_relative(path: &Path) -> bool {
    path.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references_name_a_host() {
        for yes in [
            "localhost:5000/hello:v1",
            "localhost/hello",
            "ghcr.io/org/app:v1",
            "127.0.0.1:5000/a/b@sha256:0123",
            "docker.io/library/python:3.12",
        ] {
            assert!(is_registry_reference(yes), "{yes}");
        }
        for no in [
            "nginx",
            "nginx:1.25",
            "org/app",
            "./x.wasm",
            "../a/b",
            "/abs/x.wasm",
            "a.b/c.wasm",
        ] {
            assert!(!is_registry_reference(no), "{no}");
        }
    }

    #[test]
    fn loopback_registries_are_reached_over_plain_http() {
        let default = Registries::default();
        assert_eq!(plain_http("localhost:5000", &default), ["localhost:5000"]);
        assert_eq!(plain_http("127.0.0.2:5000", &default), ["127.0.0.2:5000"]);
        assert_eq!(plain_http("[::1]:5000", &default), ["[::1]:5000"]);
        assert!(plain_http("ghcr.io", &default).is_empty());
        let listed = Registries {
            insecure: vec!["registry.lan:5000".into()],
            ..default
        };
        assert_eq!(
            plain_http("registry.lan:5000", &listed),
            ["registry.lan:5000"]
        );
    }
}
