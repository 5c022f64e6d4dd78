//! Images: an image reference becomes a Wasm program (component or core
//! module, told apart by its bytes), compiled once and cached on disk, plus,
//! for an image directory, its root filesystem and OCI-style config.
//!
//! Two kinds of `image:` are understood:
//! - a path to a `.wasm` file: absolute, or relative to the manifest's folder
//!   (anything ending in `.wasm` or starting with `/`, `./` or `../`);
//! - a reference `name[:tag]` (tag `latest` when absent), looked up as the
//!   directory `<root>/<name>/<tag>/` in each root of the image path, in order:
//!   `images/` next to the manifest, the entries of `WPOD_IMAGE_PATH`, then the
//!   user's data directory (`$XDG_DATA_HOME/wpod/images`, else
//!   `~/.local/share/wpod/images`). An image directory holds `image.json`
//!   (the `config` object of an OCI image config: `Entrypoint`, `Cmd`, `Env`,
//!   `WorkingDir`) and `rootfs/`, shown read-only to the container at `/`.
//!
//! A reference that names a registry (`localhost:5000/hello:v1`) is an
//! image pulled into the store (see `registry`), in the same shape.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::Engine;
use wasmtime::component::Component;

mod detect;

/// Which WASI a Wasm program's bytes are for: `wasip2` (a component) or
/// `wasip1` (a core module); what they are instead, if not Wasm.
pub(crate) fn wasi_os(bytes: &[u8]) -> Result<&'static str, &'static str> {
    match detect(bytes)? {
        Kind::Component => Ok("wasip2"),
        Kind::Module => Ok("wasip1"),
    }
}

use detect::{Kind, detect};

/// Where image references are looked up, in order.
#[derive(Debug, Clone, Default)]
pub struct ImagePath {
    pub roots: Vec<PathBuf>,
}

impl ImagePath {
    /// The roots from `WPOD_IMAGE_PATH` (a list like `PATH`) and then the
    /// user's data directory. The manifest's own `images/` folder is always
    /// searched first and is not part of this list.
    pub fn from_env() -> ImagePath {
        let mut roots: Vec<PathBuf> = std::env::var_os("WPOD_IMAGE_PATH")
            .map(|value| {
                std::env::split_paths(&value)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(data) = user_data_dir() {
            roots.push(data.join("wpod").join("images"));
        }
        ImagePath { roots }
    }
}

pub(crate) fn user_data_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if cfg!(windows) {
        return std::env::var_os("LOCALAPPDATA").map(PathBuf::from);
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share"))
}

/// An image found on disk.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// The `.wasm` file, for a path image.
    pub wasm_file: Option<PathBuf>,
    /// The root filesystem, for an image directory.
    pub rootfs: Option<PathBuf>,
    pub config: ImageConfig,
}

/// The part of an OCI image config that wpod reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
}

#[derive(Deserialize)]
struct ImageJson {
    #[serde(default)]
    config: ImageConfig,
}

/// Why an image could not be used. Each names the image as written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image `{reference}` not found; looked for {}; {}", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "), not_found_hint(reference))]
    NotFound {
        reference: String,
        searched: Vec<PathBuf>,
    },
    #[error("image `{reference}`: {} is {what}, not a WebAssembly program; build the program for wasm32-wasip2 (a component) or wasm32-wasip1 (a core module)", path.display())]
    NotWasm {
        reference: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error("image `{reference}`: {} is not a valid WebAssembly program: {message}", path.display())]
    Invalid {
        reference: String,
        path: PathBuf,
        message: String,
    },
    #[error("image `{reference}`: {} is not a WASI command: {message}; build it as a program with a `main` (a wasi:cli/run component or a module exporting `_start`)", path.display())]
    NotCommand {
        reference: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "image `{reference}`: program `{program}` not found in the image (searched {searched})"
    )]
    ProgramNotFound {
        reference: String,
        program: String,
        searched: String,
    },
    #[error("image `{reference}`: {}: {source}", path.display())]
    Io {
        reference: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image `{reference}`: bad image.json: {message}")]
    BadConfig { reference: String, message: String },
    #[error(transparent)]
    Pull(#[from] crate::registry::PullError),
    #[error("image `{reference}` is not in the image store ({}); pull it with `wpod pull {reference}`, or let imagePullPolicy pull it", store.display())]
    NotPulled { reference: String, store: PathBuf },
}

impl ImageError {
    /// Not found (127) or not runnable (126), as a shell tells them apart.
    pub fn fault(&self) -> crate::Fault {
        match self {
            ImageError::NotFound { .. } | ImageError::ProgramNotFound { .. } => {
                crate::Fault::NotFound
            }
            ImageError::NotWasm { .. }
            | ImageError::Invalid { .. }
            | ImageError::NotCommand { .. }
            | ImageError::Io { .. } => crate::Fault::NotRunnable,
            ImageError::BadConfig { .. } => crate::Fault::Input,
            ImageError::Pull(crate::registry::PullError::NotWasm { .. }) => {
                crate::Fault::NotRunnable
            }
            ImageError::Pull(_) => crate::Fault::Input,
            ImageError::NotPulled { .. } => crate::Fault::NotFound,
        }
    }
}

impl Image {
    /// Finds `reference` on disk (no Wasm is read yet).
    pub(crate) fn resolve(
        reference: &str,
        base_dir: &Path,
        image_path: &ImagePath,
        registries: &crate::registry::Registries,
    ) -> Result<Image, ImageError> {
        if crate::registry::is_registry_reference(reference) {
            let store = crate::registry::ImageStore::new(&registries.store);
            let Some(pulled) = store.lookup(reference) else {
                return Err(ImageError::NotPulled {
                    reference: reference.into(),
                    store: registries.store.clone(),
                });
            };
            return match pulled.flavour {
                crate::registry::Flavour::WasmArtifact => Ok(Image {
                    wasm_file: Some(pulled.path),
                    rootfs: None,
                    config: ImageConfig::default(),
                }),
                crate::registry::Flavour::Rootfs => {
                    let bytes =
                        std::fs::read(pulled.path.join("image.json")).map_err(|source| {
                            ImageError::Io {
                                reference: reference.into(),
                                path: pulled.path.join("image.json"),
                                source,
                            }
                        })?;
                    let json: ImageJson =
                        serde_json::from_slice(&bytes).map_err(|e| ImageError::BadConfig {
                            reference: reference.into(),
                            message: e.to_string(),
                        })?;
                    Ok(Image {
                        wasm_file: None,
                        rootfs: Some(pulled.path.join("rootfs")),
                        config: json.config,
                    })
                }
            };
        }
        if looks_like_path(reference) {
            let path = base_dir.join(reference);
            return match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(Image {
                    wasm_file: Some(path),
                    rootfs: None,
                    config: ImageConfig::default(),
                }),
                Ok(_) => Err(ImageError::NotWasm {
                    reference: reference.into(),
                    path,
                    what: "a directory",
                }),
                Err(_) => Err(ImageError::NotFound {
                    reference: reference.into(),
                    searched: vec![path],
                }),
            };
        }
        let (name, tag) = split_reference(reference);
        let mut searched = Vec::new();
        let roots =
            std::iter::once(base_dir.join("images")).chain(image_path.roots.iter().cloned());
        for root in roots {
            let dir = root.join(name).join(tag);
            let config_path = dir.join("image.json");
            match std::fs::read(&config_path) {
                Ok(bytes) => {
                    let json: ImageJson =
                        serde_json::from_slice(&bytes).map_err(|e| ImageError::BadConfig {
                            reference: reference.into(),
                            message: e.to_string(),
                        })?;
                    return Ok(Image {
                        wasm_file: None,
                        rootfs: Some(dir.join("rootfs")),
                        config: json.config,
                    });
                }
                Err(_) => searched.push(dir),
            }
        }
        Err(ImageError::NotFound {
            reference: reference.into(),
            searched,
        })
    }

    /// The image's environment (`Env`, `NAME=value` strings) as pairs.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .flatten()
            .filter_map(|entry| {
                entry
                    .split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// Finds the Wasm file that runs `program` (argv[0]): the `.wasm` file of a
    /// path image, or `program` looked up in the root filesystem like `PATH`.
    /// A script (`#!interpreter`) resolves to its interpreter, which is then
    /// given the script's path as its first argument, as the kernel does.
    pub(crate) fn program(
        &self,
        reference: &str,
        argv: &mut Vec<String>,
        working_dir: &str,
    ) -> Result<PathBuf, ImageError> {
        let Some(rootfs) = &self.rootfs else {
            return Ok(self
                .wasm_file
                .clone()
                .expect("a path image has a wasm file"));
        };
        let root = cap_std::fs::Dir::open_ambient_dir(rootfs, cap_std::ambient_authority())
            .map_err(|source| ImageError::Io {
                reference: reference.into(),
                path: rootfs.clone(),
                source,
            })?;
        let search_path = self
            .env()
            .into_iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v)
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
        // Scripts may name an interpreter that is itself a script; stop loops.
        for _ in 0..4 {
            let program = argv.first().cloned().unwrap_or_default();
            let candidates: Vec<String> = if program.contains('/') {
                let absolute = if program.starts_with('/') {
                    program.clone()
                } else {
                    format!("{}/{program}", working_dir.trim_end_matches('/'))
                };
                vec![absolute]
            } else {
                search_path
                    .split(':')
                    .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
                    .collect()
            };
            let found = candidates.iter().find_map(|candidate| {
                let inside = candidate.trim_start_matches('/');
                let meta = root.metadata(inside).ok()?;
                meta.is_file().then(|| inside.to_owned())
            });
            let Some(inside) = found else {
                return Err(ImageError::ProgramNotFound {
                    reference: reference.into(),
                    program,
                    searched: candidates.join(", "),
                });
            };
            let mut head = [0u8; 256];
            let read = root
                .open(&inside)
                .and_then(|mut file| file.read(&mut head))
                .map_err(|source| ImageError::Io {
                    reference: reference.into(),
                    path: rootfs.join(&inside),
                    source,
                })?;
            let head = &head[..read];
            if let Some(line) = head.strip_prefix(b"#!") {
                let line =
                    String::from_utf8_lossy(line.split(|b| *b == b'\n').next().unwrap_or_default())
                        .into_owned();
                let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
                if words.is_empty() {
                    return Err(ImageError::NotWasm {
                        reference: reference.into(),
                        path: rootfs.join(&inside),
                        what: "a script without an interpreter",
                    });
                }
                words.truncate(2);
                words.push(format!("/{inside}"));
                argv.splice(0..1, words);
                continue;
            }
            // The path inside the root is checked by cap-std above (no escape
            // through `..` or symlinks); the host path is used for reading.
            return Ok(rootfs.join(inside));
        }
        Err(ImageError::NotWasm {
            reference: reference.into(),
            path: rootfs.clone(),
            what: "a chain of scripts too long to follow",
        })
    }
}

fn not_found_hint(reference: &str) -> &'static str {
    if looks_like_path(reference) {
        "a relative path is relative to the manifest's folder"
    } else {
        "an image is a folder <name>/<tag>/ holding image.json and rootfs/; WPOD_IMAGE_PATH adds places to look (`cargo xtask images` builds this repository's images into target/images)"
    }
}

fn looks_like_path(reference: &str) -> bool {
    reference.ends_with(".wasm")
        || reference.starts_with('/')
        || reference.starts_with("./")
        || reference.starts_with("../")
        || Path::new(reference).is_absolute()
}

fn split_reference(reference: &str) -> (&str, &str) {
    // `registry:5000/name:tag`: the tag is after the last ':' that follows the last '/'.
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(colon) => (&reference[..slash + colon], &reference[slash + colon + 1..]),
        None => (reference, "latest"),
    }
}

/// A compiled program, ready to link.
#[derive(Clone)]
pub(crate) enum Compiled {
    Component(Component),
    Module(wasmtime::Module),
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compiled::Component(_) => "Component",
            Compiled::Module(_) => "Module",
        })
    }
}

/// Compiles Wasm files once: in memory for the life of the [`Compiler`], and
/// on disk (when a cache directory is set) keyed by the file's content and
/// the engine's configuration, so a second run compiles nothing.
pub(crate) struct Compiler {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    /// The engine's part of every cache key, computed once, when a file is
    /// first hashed (a start that finds its programs by file identity never
    /// needs it).
    engine_key: std::sync::OnceLock<[u8; 32]>,
    compiled: Mutex<HashMap<[u8; 32], Compiled>>,
}

impl Compiler {
    pub(crate) fn new(engine: Engine, cache_dir: Option<PathBuf>) -> Compiler {
        Compiler {
            engine,
            cache_dir,
            engine_key: std::sync::OnceLock::new(),
            compiled: Mutex::new(HashMap::new()),
        }
    }

    fn engine_key(&self) -> [u8; 32] {
        *self.engine_key.get_or_init(|| {
            let mut hasher = Sha256Hasher(Sha256::new());
            std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut hasher);
            hasher.0.finalize().into()
        })
    }

    /// The program compiled from `path` if the file is the one compiled
    /// before (same identity, size and times), so that its cache entry is
    /// known without reading and hashing it (for a 38 MB module that was
    /// most of a warm start): from memory, or from the disk cache. Cheap
    /// enough to call from async code; [`Compiler::compile`] does the rest.
    pub(crate) fn cached(&self, path: &Path) -> Option<Compiled> {
        let dir = self.cache_dir.as_ref()?;
        let meta = std::fs::metadata(path).ok()?;
        let compiled = self.load_indexed(&FileIndex::new(dir, path, fingerprint(&meta)))?;
        tracing::debug!(program = %path.display(), "loaded from the compile cache");
        Some(compiled)
    }

    /// Reads, checks and compiles `path` (blocking: call from a blocking
    /// task), once [`Compiler::cached`] has not found it by file identity:
    /// the file is read and hashed, and found again by its content if it was
    /// compiled before under another name or identity.
    pub(crate) fn compile(&self, reference: &str, path: &Path) -> Result<Compiled, ImageError> {
        let io = |source| ImageError::Io {
            reference: reference.into(),
            path: path.to_owned(),
            source,
        };
        let index = match (&self.cache_dir, std::fs::metadata(path)) {
            (Some(dir), Ok(meta)) => Some(FileIndex::new(dir, path, fingerprint(&meta))),
            _ => None,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let kind = detect(&bytes).map_err(|what| ImageError::NotWasm {
            reference: reference.into(),
            path: path.to_owned(),
            what,
        })?;
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.engine_key())
            .chain_update(&bytes)
            .finalize()
            .into();
        if let Some(index) = &index {
            index.write(&kind, &key);
        }
        if let Some(compiled) = self
            .compiled
            .lock()
            .expect("compile cache poisoned")
            .get(&key)
        {
            return Ok(compiled.clone());
        }
        let cache_file = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}.cwasm", hex::encode(key))));
        let compiled = match cache_file
            .as_deref()
            .and_then(|file| self.load_cached(&kind, file))
        {
            Some(compiled) => {
                tracing::debug!(program = %path.display(), "loaded from the compile cache");
                compiled
            }
            None => {
                let started = std::time::Instant::now();
                let invalid = |e: wasmtime::Error| ImageError::Invalid {
                    reference: reference.into(),
                    path: path.to_owned(),
                    message: format!("{e:#}"),
                };
                let compiled = match kind {
                    Kind::Component => {
                        Compiled::Component(Component::new(&self.engine, &bytes).map_err(invalid)?)
                    }
                    Kind::Module => Compiled::Module(
                        wasmtime::Module::new(&self.engine, &bytes).map_err(invalid)?,
                    ),
                };
                tracing::debug!(program = %path.display(), elapsed = ?started.elapsed(), "compiled");
                if let Some(file) = &cache_file {
                    store_cached(&compiled, file);
                }
                compiled
            }
        };
        self.compiled
            .lock()
            .expect("compile cache poisoned")
            .insert(key, compiled.clone());
        Ok(compiled)
    }

    /// A program found through its file's index entry, from memory or disk.
    fn load_indexed(&self, index: &FileIndex) -> Option<Compiled> {
        let (kind, key) = index.read()?;
        if let Some(compiled) = self
            .compiled
            .lock()
            .expect("compile cache poisoned")
            .get(&key)
        {
            return Some(compiled.clone());
        }
        let file = index.cache_dir.join(format!("{}.cwasm", hex::encode(key)));
        let compiled = self.load_cached(&kind, &file)?;
        self.compiled
            .lock()
            .expect("compile cache poisoned")
            .insert(key, compiled.clone());
        Some(compiled)
    }

    fn load_cached(&self, kind: &Kind, file: &Path) -> Option<Compiled> {
        if !file.exists() {
            return None;
        }
        // wasmtime trusts the bytes of a precompiled artifact. The cache
        // directory is wpod's own (created 0700) and holds only files that
        // `store_cached` wrote from wasmtime's own `serialize`; the name binds
        // the content hash of the source and the engine configuration, and
        // wasmtime still checks the artifact's header against the engine.
        let loaded = match kind {
            Kind::Component => {
                // SAFETY: the file is a wasmtime-serialized component from
                // wpod's private cache, as explained above.
                let component = unsafe { Component::deserialize_file(&self.engine, file) };
                component.map(Compiled::Component)
            }
            Kind::Module => {
                // SAFETY: the file is a wasmtime-serialized module from wpod's
                // private cache, as explained above.
                let module = unsafe { wasmtime::Module::deserialize_file(&self.engine, file) };
                module.map(Compiled::Module)
            }
        };
        match loaded {
            Ok(compiled) => Some(compiled),
            Err(error) => {
                tracing::debug!(file = %file.display(), %error, "ignoring unusable cache entry");
                None
            }
        }
    }
}

/// Whether the compile cache in `cache_dir` has an entry for `program` that
/// a pod process can load without compiling, as far as can be told without
/// an engine: an index entry for the file as it is now, written after the
/// running wpod binary was (a rebuilt wpod may have another engine
/// configuration), and its artifact. The OS wall's supervisor asks, to know
/// whether to compile before the pod process starts behind the wall, where
/// the cache is read-only.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn looks_cached(cache_dir: &Path, program: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(program) else {
        return false;
    };
    let index = FileIndex::new(cache_dir, program, fingerprint(&meta));
    let Some((_, key)) = index.read() else {
        return false;
    };
    let written = std::fs::metadata(&index.file).and_then(|m| m.modified());
    let built = std::env::current_exe()
        .and_then(std::fs::metadata)
        .and_then(|m| m.modified());
    let fresh = match (written, built) {
        (Ok(written), Ok(built)) => written >= built,
        _ => false,
    };
    fresh
        && cache_dir
            .join(format!("{}.cwasm", hex::encode(key)))
            .exists()
}

/// What identifies a file's content without reading it: device, inode,
/// size, modification and change times (size and modification time where
/// there are no inodes). Any write changes the times; a replaced file
/// changes the inode.
fn fingerprint(meta: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{} {} {} {}.{} {}.{}",
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    }
    #[cfg(not(unix))]
    {
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        format!("{} {:?}", meta.len(), modified)
    }
}

/// `<cache>/files/<hash of the path>`: the fingerprint a Wasm file had when
/// it was compiled, and the cache key of its artifact.
/// Removes the compile cache's entries for `programs` (files that are gone
/// or going: a pruned image's): their file index, and each compiled
/// artifact no other file's index still names. Returns the entries removed
/// and their bytes.
pub(crate) fn forget_cached(cache_dir: &Path, programs: &[PathBuf]) -> (usize, u64) {
    let files = cache_dir.join("files");
    let key_of = |index: &Path| -> Option<String> {
        let text = std::fs::read_to_string(index).ok()?;
        text.lines().nth(2).map(str::to_owned)
    };
    let mut keys = Vec::new();
    let mut removed = (0, 0);
    for program in programs {
        let index = files.join(hex::encode(Sha256::digest(
            program.as_os_str().as_encoded_bytes(),
        )));
        if let Some(key) = key_of(&index)
            && std::fs::remove_file(&index).is_ok()
        {
            keys.push(key);
            removed.0 += 1;
        }
    }
    let still_named: std::collections::HashSet<String> = std::fs::read_dir(&files)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| key_of(&entry.path()))
        .collect();
    for key in keys {
        if still_named.contains(&key) {
            continue;
        }
        let artifact = cache_dir.join(format!("{key}.cwasm"));
        let bytes = std::fs::metadata(&artifact).map(|m| m.len()).unwrap_or(0);
        if std::fs::remove_file(&artifact).is_ok() {
            removed.0 += 1;
            removed.1 += bytes;
        }
    }
    removed
}

struct FileIndex {
    cache_dir: PathBuf,
    file: PathBuf,
    fingerprint: String,
}

impl FileIndex {
    fn new(cache_dir: &Path, program: &Path, fingerprint: String) -> FileIndex {
        let name = hex::encode(Sha256::digest(program.as_os_str().as_encoded_bytes()));
        FileIndex {
            cache_dir: cache_dir.to_owned(),
            file: cache_dir.join("files").join(name),
            fingerprint,
        }
    }

    /// The kind and key recorded for the file, if it has not changed since.
    fn read(&self) -> Option<(Kind, [u8; 32])> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        let mut lines = text.lines();
        if lines.next()? != self.fingerprint {
            return None;
        }
        let kind = match lines.next()? {
            "component" => Kind::Component,
            "module" => Kind::Module,
            _ => return None,
        };
        let key = hex::decode(lines.next()?).ok()?.try_into().ok()?;
        Some((kind, key))
    }

    fn write(&self, kind: &Kind, key: &[u8; 32]) {
        let kind = match kind {
            Kind::Component => "component",
            Kind::Module => "module",
        };
        let text = format!("{}\n{kind}\n{}\n", self.fingerprint, hex::encode(key));
        let result = create_private_dir(self.file.parent().expect("in files/")).and_then(|()| {
            let temporary = self
                .file
                .with_extension(format!("{}.tmp", std::process::id()));
            std::fs::write(&temporary, text)?;
            std::fs::rename(&temporary, &self.file)
        });
        if let Err(error) = result {
            tracing::debug!(file = %self.file.display(), %error, "could not write the compile cache's file index");
        }
    }
}

/// Writes a cache entry atomically (temporary file, then rename); a failure
/// only costs a compile next time.
fn store_cached(compiled: &Compiled, file: &Path) {
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let bytes = match compiled {
            Compiled::Component(component) => component.serialize()?,
            Compiled::Module(module) => module.serialize()?,
        };
        let dir = file.parent().expect("cache file has a folder");
        create_private_dir(dir)?;
        let temporary = dir.join(format!(
            ".{}.{}",
            std::process::id(),
            file.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
        ));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, file)?;
        Ok(())
    })();
    if let Err(error) = result {
        tracing::warn!(file = %file.display(), %error, "could not write the compile cache");
    }
}

pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only used to feed bytes into SHA-256")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_reference("nginx"), ("nginx", "latest"));
        assert_eq!(
            split_reference("geektime/sample:v2"),
            ("geektime/sample", "v2")
        );
        assert_eq!(split_reference("reg:5000/app"), ("reg:5000/app", "latest"));
        assert!(looks_like_path("app.wasm") && looks_like_path("./x") && !looks_like_path("nginx"));
    }
}
