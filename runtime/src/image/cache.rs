//! The compile cache: Wasm files compiled once, in memory for the life of
//! a [`Compiler`], and on disk (when a cache directory is set) keyed by the
//! file's content and the engine's configuration, so a second run compiles
//! nothing.
//!
//! A file index, `<cache>/files/<hash of the path>`, records the fingerprint
//! a Wasm file had when it was compiled (device, inode, size, modification
//! and change times) and the cache key of its artifact, so that a file
//! compiled before is found by its identity without reading and hashing it.
//! The cache directory is wpod's own (created 0700); entries are written
//! atomically (temporary file, then rename), and a failure only costs a
//! compile next time.

use super::ImageError;
use super::detect::{Kind, detect};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::Engine;
use wasmtime::component::Component;

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

    /// The compile cache's file of the program compiled from `path`, if the
    /// file is the one compiled before (as [`Compiler::cached`]).
    pub(crate) fn artifact(&self, path: &Path) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let meta = std::fs::metadata(path).ok()?;
        let (_, key) = FileIndex::new(dir, path, fingerprint(&meta)).read()?;
        let file = dir.join(format!("{}.cwasm", hex::encode(key)));
        file.exists().then_some(file)
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
                let invalid = |e: wasmtime::Error| {
                    let message = format!("{e:#}");
                    // The async ABI is what WASI 0.3 is built on: say how to
                    // turn it on, not only what is missing.
                    if message.contains("requires the component model async feature") {
                        return ImageError::NeedsWasip3 {
                            reference: reference.into(),
                            path: path.to_owned(),
                        };
                    }
                    ImageError::Invalid {
                        reference: reference.into(),
                        path: path.to_owned(),
                        message,
                    }
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

/// `<cache>/files/<hash of the path>`: the fingerprint a Wasm file had when
/// it was compiled, and the cache key of its artifact.
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
