//! Images from a real registry: Debian's `docker-registry` (Distribution
//! 2.8) on loopback, started by each test in a folder of its own, images
//! pushed with oci-client (the crate wpod pulls with) in each flavour, and
//! `wpod run`/`pull`/`images` run as a user would, with a store of the
//! workspace's own.

use crate::support::{Run, Workspace, component};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{ImageIndexEntry, OciImageIndex, OciImageManifest, Platform};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// A registry serving on 127.0.0.1, stopped when dropped.
pub(crate) struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(crate) address: String,
    /// What pushes present.
    auth: RegistryAuth,
    _data: tempfile::TempDir,
}

impl Registry {
    /// Starts one; on Linux a missing binary fails the test (`.ci/run`
    /// installs the package), elsewhere it skips with the reason.
    pub(crate) fn start() -> Option<Registry> {
        Registry::start_with(None)
    }

    /// [`Registry::start`], requiring basic auth of `user` and `password`.
    fn start_with(credentials: Option<(&str, &str)>) -> Option<Registry> {
        if !std::path::Path::new(REGISTRY).exists() {
            if cfg!(target_os = "linux") {
                panic!("{REGISTRY} is missing: apt-get install docker-registry (.ci/run does)");
            }
            eprintln!("skipped: no {REGISTRY} on this OS");
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = data.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: {address}\n  secret: wpod-tests\n",
            data.path().join("blobs").display()
        );
        if let Some((user, password)) = credentials {
            let htpasswd = data.path().join("htpasswd");
            let hash = bcrypt::hash(password, 4).unwrap();
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd: {{realm: wpod-tests, path: {}}}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry {
            child,
            address,
            auth: match credentials {
                Some((user, password)) => RegistryAuth::Basic(user.into(), password.into()),
                None => RegistryAuth::Anonymous,
            },
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(registry)
    }

    fn client() -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        })
    }

    fn reference(&self, name: &str) -> Reference {
        format!("{}/{name}", self.address).parse().unwrap()
    }

    /// Pushes an image manifest of `layers` and `config`; its digest.
    fn push(&self, name: &str, layers: Vec<ImageLayer>, config: Config) -> String {
        let reference = self.reference(name);
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let client = Registry::client();
            let manifest = OciImageManifest::build(&layers, &config, None);
            client
                .push(&reference, &layers, config, &self.auth, Some(manifest))
                .await
                .expect("pushing")
                .manifest_url
        });
        self.digest_of(name)
    }

    /// The digest the registry gives `name`'s manifest.
    fn digest_of(&self, name: &str) -> String {
        let reference = self.reference(name);
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            Registry::client()
                .fetch_manifest_digest(&reference, &self.auth)
                .await
                .expect("the pushed manifest's digest")
        })
    }

    /// A Wasm OCI artifact (the CNCF layout) holding `wasm`.
    fn push_artifact(&self, name: &str, wasm: Vec<u8>) -> String {
        self.push(
            name,
            vec![ImageLayer::new(wasm, "application/wasm".into(), None)],
            Config::new(
                br#"{"architecture":"wasm","os":"wasip2","layerDigests":[]}"#.to_vec(),
                "application/vnd.wasm.config.v0+json".into(),
                None,
            ),
        )
    }

    /// A platform image for `os/architecture` whose one gzip layer holds
    /// `files`, run as `entrypoint`.
    fn push_rootfs(
        &self,
        name: &str,
        platform: (&str, &str),
        files: &[(&str, &[u8])],
        entrypoint: &[&str],
    ) -> String {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            tar.append_data(&mut header, path, *bytes).unwrap();
        }
        let layer = tar.into_inner().unwrap().finish().unwrap();
        let config = serde_json::json!({
            "architecture": platform.1,
            "os": platform.0,
            "config": {"Entrypoint": entrypoint, "Env": ["GREETING=from the image"]},
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        self.push(
            name,
            vec![ImageLayer::oci_v1_gzip(layer, None)],
            Config::oci_v1(serde_json::to_vec(&config).unwrap(), None),
        )
    }

    /// An index of the manifests `entries` (digest, os, architecture).
    fn push_index(&self, name: &str, entries: &[(&str, &str, &str)]) {
        let reference = self.reference(name);
        let index = OciImageIndex {
            schema_version: 2,
            media_type: Some(oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE.into()),
            manifests: entries
                .iter()
                .map(|(digest, os, architecture)| ImageIndexEntry {
                    media_type: oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.into(),
                    digest: (*digest).into(),
                    size: 0,
                    platform: Some(Platform {
                        architecture: (*architecture).into(),
                        os: (*os).into(),
                        os_version: None,
                        os_features: None,
                        variant: None,
                        features: None,
                    }),
                    annotations: None,
                    artifact_type: None,
                })
                .collect(),
            artifact_type: None,
            annotations: None,
        };
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            Registry::client()
                .push_manifest_list(&reference, &self.auth, index)
                .await
                .expect("pushing the index")
        });
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hello() -> Vec<u8> {
    std::fs::read(component("hello")).unwrap()
}

/// The store's `refs` and `images` entries (what a failed pull must not add).
fn stored(workspace: &Workspace) -> Vec<String> {
    let store = workspace.path().join(".local/share/wpod/store");
    ["refs", "images"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(store.join(dir)).into_iter().flatten())
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn pull(workspace: &Workspace, reference: &str) -> Run {
    Run::from(
        workspace
            .wpod()
            .args(["pull", reference])
            .output()
            .expect("running wpod pull"),
    )
}

#[test]
fn an_artifact_and_a_rootfs_image_pull_and_run_and_then_run_from_the_store() {
    let Some(registry) = Registry::start() else {
        return;
    };
    registry.push_artifact("hello:v1", hello());
    registry.push_rootfs(
        "boxed:v1",
        ("wasip2", "wasm"),
        &[("bin/hello.wasm", &hello())],
        &["/bin/hello.wasm"],
    );
    let workspace = Workspace::new();
    let yaml = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: pulled}}
spec:
  restartPolicy: Never
  containers:
  - name: artifact
    image: {0}/hello:v1
  - name: rootfs
    image: {0}/boxed:v1
    imagePullPolicy: IfNotPresent
",
        registry.address
    );
    let run = workspace.run_pod(&yaml, &[]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("[artifact] hello from wpod"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("[rootfs] hello from wpod"),
        "{}",
        run.stdout
    );
    let images = Run::from(workspace.wpod().arg("images").output().unwrap());
    images.expect_code(0);
    for line in [
        format!("{}/hello:v1", registry.address),
        format!("{}/boxed:v1", registry.address),
    ] {
        assert!(images.stdout.contains(&line), "{}", images.stdout);
    }
    assert!(images.stdout.contains("wasm artifact"), "{}", images.stdout);
    assert!(
        images.stdout.contains("wasi/wasm rootfs"),
        "{}",
        images.stdout
    );
    // Both tags are v1 (IfNotPresent): with the registry gone, they run
    // from the store.
    let address = registry.address.clone();
    drop(registry);
    let again = workspace.run_pod(&yaml, &[]);
    again.expect_code(0);
    assert!(
        again.stdout.contains("[rootfs] hello from wpod"),
        "{}",
        again.stdout
    );
    // rmi takes one reference and what only it used; prune the rest.
    let store = workspace.path().join(".local/share/wpod/store");
    let blobs = || {
        std::fs::read_dir(store.join("blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs();
    let hello_v1 = format!("{address}/hello:v1");
    // The compile cache's index entry for the artifact's blob (named by
    // the program's path), which rmi takes with the blob.
    use sha2::Digest as _;
    let blob = store
        .join("blobs/sha256")
        .join(hex::encode(sha2::Sha256::digest(hello())));
    let index = crate::support::cache_dir()
        .join("files")
        .join(hex::encode(sha2::Sha256::digest(
            blob.as_os_str().as_encoded_bytes(),
        )));
    assert!(index.exists(), "{} compiled from the store", blob.display());
    let rmi = Run::from(workspace.wpod().args(["rmi", &hello_v1]).output().unwrap());
    rmi.expect_code(0);
    assert_eq!(blobs(), before - 1, "the artifact's one blob");
    assert!(
        !index.exists(),
        "the compile cache forgot {}",
        blob.display()
    );
    let images = Run::from(workspace.wpod().arg("images").output().unwrap());
    assert!(!images.stdout.contains("hello:v1"), "{}", images.stdout);
    assert!(images.stdout.contains("boxed:v1"), "{}", images.stdout);
    let gone = Run::from(workspace.wpod().args(["rmi", &hello_v1]).output().unwrap());
    gone.expect_code(125);
    assert!(
        gone.stderr.contains("not in the image store"),
        "{}",
        gone.stderr
    );
    // A reference lost some other way: prune takes what it used.
    for entry in std::fs::read_dir(store.join("refs")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let prune = Run::from(workspace.wpod().args(["image", "prune"]).output().unwrap());
    prune.expect_code(0);
    assert_eq!(blobs(), 0, "{}", prune.stdout);
    assert_eq!(stored(&workspace), Vec::<String>::new());
}

#[test]
fn an_index_is_narrowed_to_wasi_wasm_and_other_platforms_are_refused_by_name() {
    let Some(registry) = Registry::start() else {
        return;
    };
    // An index names manifests of its own repository.
    let linux_image = |name: &str| {
        registry.push_rootfs(
            name,
            ("linux", "amd64"),
            &[("bin/sh", b"\x7fELF")],
            &["/bin/sh"],
        )
    };
    let linux = linux_image("multi:linux");
    linux_image("linux-only:v1");
    let wasi = registry.push_rootfs(
        "multi:wasi",
        ("wasi", "wasm"),
        &[("hello.wasm", &hello())],
        &["/hello.wasm"],
    );
    registry.push_index(
        "multi:v1",
        &[(&linux, "linux", "amd64"), (&wasi, "wasi", "wasm")],
    );
    let other_linux = linux_image("linux-index:amd64");
    registry.push_index("linux-index:v1", &[(&other_linux, "linux", "amd64")]);
    let workspace = Workspace::new();
    let multi = pull(&workspace, &format!("{}/multi:v1", registry.address));
    multi.expect_code(0);
    assert_eq!(multi.stdout.trim(), wasi, "the wasi/wasm entry's digest");
    assert_eq!(
        multi.stderr, "",
        "no progress lines when stderr is no terminal"
    );
    for name in ["linux-only:v1", "linux-index:v1"] {
        let refused = pull(&workspace, &format!("{}/{name}", registry.address));
        refused.expect_code(125);
        assert!(
            refused
                .stderr
                .contains("is not a WebAssembly image: it is for linux/amd64"),
            "{}",
            refused.stderr
        );
    }
    assert_eq!(stored(&workspace).len(), 2, "only multi:v1 is stored");
}

#[test]
fn a_pinned_digest_runs_and_a_wrong_one_an_unknown_tag_or_no_registry_fail_leaving_nothing() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let digest = registry.push_artifact("hello:v1", hello());
    let workspace = Workspace::new();
    let pinned = format!("{}/hello@{digest}", registry.address);
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: pinned}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: '{pinned}'\n"
    );
    // Written as it is: `@` is the test manifests' placeholder mark.
    let manifest = workspace.write("pinned.yaml", &yaml);
    let run = Run::from(workspace.wpod().arg("run").arg(&manifest).output().unwrap());
    run.expect_code(0);
    assert!(
        run.stdout.contains("[app] hello from wpod"),
        "{}",
        run.stdout
    );

    let other = Workspace::new();
    let wrong = format!("{}/hello@sha256:{}", registry.address, "0".repeat(64));
    let unknown = format!("{}/hello:v9", registry.address);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("{closed}/hello:v1");
    for (reference, says) in [
        (&wrong, "from the registry"),
        (&unknown, "manifest unknown"),
        (&nowhere, "Connection refused"),
    ] {
        let failed = pull(&other, reference);
        failed.expect_code(125);
        assert!(
            failed.stderr.contains(&format!("image `{reference}`")) && failed.stderr.contains(says),
            "{}",
            failed.stderr
        );
    }
    assert!(stored(&other).is_empty(), "{:?}", stored(&other));
    // In a pod, with -o json: the pod as it stands, the container waiting.
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: unknown}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: {unknown}\n"
    );
    let run = other.run_pod(&yaml, &["-o", "json"]);
    run.expect_code(125);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(status["phase"], "Pending");
    let waiting = &crate::support::container(&status, "app")["state"]["waiting"];
    assert_eq!(waiting["reason"], "ErrImagePull", "{status}");
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .contains("manifest unknown"),
        "{status}"
    );
    assert!(stored(&other).is_empty(), "{:?}", stored(&other));
}

#[test]
fn a_registry_with_basic_auth_takes_the_credentials_of_dockers_config() {
    let Some(registry) = Registry::start_with(Some(("wpod", "s3cret"))) else {
        return;
    };
    registry.push_artifact("private:v1", hello());
    let reference = format!("{}/private:v1", registry.address);
    let workspace = Workspace::new();
    let refused = pull(&workspace, &reference);
    refused.expect_code(125);
    assert!(
        refused.stderr.contains(&format!("image `{reference}`"))
            && refused.stderr.contains("log in as Docker or podman do"),
        "{}",
        refused.stderr
    );
    assert!(stored(&workspace).is_empty());
    // As `docker login` (and `podman login --authfile`) write it.
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("wpod:s3cret");
    workspace.write(
        ".docker/config.json",
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.address
        ),
    );
    let pulled = pull(&workspace, &reference);
    pulled.expect_code(0);
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: private}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: {reference}\n"
    );
    let run = workspace.run_pod(&yaml, &[]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("[app] hello from wpod"),
        "{}",
        run.stdout
    );
}

#[test]
fn validate_check_images_resolves_every_image_and_pulls_nothing() {
    let Some(registry) = Registry::start() else {
        return;
    };
    registry.push_artifact("hello:v1", hello());
    registry.push_rootfs(
        "linux:v1",
        ("linux", "arm64"),
        &[("bin/sh", b"\x7fELF")],
        &["/bin/sh"],
    );
    let workspace = Workspace::new();
    let manifest = |image: &str| {
        workspace.write(
            "check.yaml",
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: checked}}\nspec:\n  containers:\n  - name: local\n    image: probe\n  - name: remote\n    image: {image}\n"
            ),
        )
    };
    let validate = |manifest: &std::path::Path, check: bool| {
        let mut command = workspace.wpod();
        command.arg("validate").arg(manifest);
        if !check {
            command.arg("--offline");
        }
        Run::from(command.output().unwrap())
    };
    let good = manifest(&format!("{}/hello:v1", registry.address));
    validate(&good, true).expect_code(0);
    assert!(stored(&workspace).is_empty(), "validate pulled");
    let linux = manifest(&format!("{}/linux:v1", registry.address));
    validate(&linux, false).expect_code(0);
    let refused = validate(&linux, true);
    refused.expect_code(126);
    assert!(
        refused.stderr.contains("spec.containers[1].image")
            && refused.stderr.contains("it is for linux/arm64"),
        "{}",
        refused.stderr
    );
    let missing = manifest("nosuch:v1");
    let absent = validate(&missing, true);
    absent.expect_code(127);
    assert!(
        absent.stderr.contains("image `nosuch:v1` not found"),
        "{}",
        absent.stderr
    );
}

/// What a pull told its progress listener.
#[derive(Debug, Default)]
struct Heard(std::sync::Mutex<Vec<(String, u64)>>);

impl wpod::PullProgress for Heard {
    fn started(&self, _reference: &str, digest: &str, total: u64) {
        self.0
            .lock()
            .unwrap()
            .push((format!("started {digest}"), total));
    }
    fn advanced(&self, digest: &str, bytes: u64) {
        self.0
            .lock()
            .unwrap()
            .push((format!("advanced {digest}"), bytes));
    }
    fn finished(&self, digest: &str) {
        self.0
            .lock()
            .unwrap()
            .push((format!("finished {digest}"), 0));
    }
}

#[test]
fn a_pull_tells_its_progress_listener_every_byte_of_every_layer() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let wasm = hello();
    registry.push_artifact("hello:v1", wasm.clone());
    let layer = format!(
        "sha256:{}",
        oci_client::client::ImageLayer::new(wasm.clone(), String::new(), None)
            .sha256_digest()
            .trim_start_matches("sha256:")
    );
    let store = tempfile::tempdir().unwrap();
    let heard = std::sync::Arc::new(Heard::default());
    let registries = wpod::Registries {
        store: store.path().to_owned(),
        progress: Some(heard.clone()),
        ..wpod::Registries::default()
    };
    let pulled = tokio::runtime::Runtime::new().unwrap().block_on(
        wpod::ImageStore::new(store.path())
            .pull(&format!("{}/hello:v1", registry.address), &registries),
    );
    pulled.unwrap();
    let heard = heard.0.lock().unwrap();
    assert_eq!(
        heard.first(),
        Some(&(format!("started {layer}"), wasm.len() as u64))
    );
    let advanced: u64 = heard
        .iter()
        .filter(|(what, _)| *what == format!("advanced {layer}"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(advanced, wasm.len() as u64);
    assert_eq!(heard.last(), Some(&(format!("finished {layer}"), 0)));
}
