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
use std::sync::{Arc, Mutex};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A compiled program, ready to link.
#[derive(Clone)]
pub(crate) enum Compiled {
    Component(Component),
    Module(wasmtime::Module),
}

impl Compiled {
    /// The engine it was compiled for.
    pub(crate) fn engine(&self) -> &Engine {
        match self {
            Compiled::Component(component) => component.engine(),
            Compiled::Module(module) => module.engine(),
        }
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compiled::Component(_) => "Component",
            Compiled::Module(_) => "Module",
        })
    }
}

/// Which compiler makes a program's machine code (`wpod run --compiler`,
/// `WPOD_COMPILER`).
///
/// wasmtime has two: Cranelift, an optimising compiler, and Winch, a
/// baseline compiler that compiles several times faster into slower code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompilerChoice {
    /// Tiered: a program compiled before runs from its Cranelift code; a
    /// program never compiled runs at once from a Winch compile while
    /// Cranelift compiles it in the background for later runs (and later
    /// restarts in the same run). Where Winch does not run (CPUs other than
    /// x86_64 and aarch64), Cranelift alone.
    #[default]
    Auto,
    /// Cranelift only: the fastest code, the slowest first start.
    Cranelift,
    /// Winch only (where it runs; Cranelift elsewhere, with a warning).
    Winch,
}

impl std::str::FromStr for CompilerChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(CompilerChoice::Auto),
            "cranelift" => Ok(CompilerChoice::Cranelift),
            "winch" => Ok(CompilerChoice::Winch),
            other => Err(format!(
                "`{other}` is not a compiler; say auto, cranelift or winch"
            )),
        }
    }
}

/// The compiler that made a compiled program: what the compile cache
/// records of each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    Cranelift,
    Winch,
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::Cranelift => "cranelift",
            Tier::Winch => "winch",
        }
    }

    fn index(self) -> usize {
        match self {
            Tier::Cranelift => 0,
            Tier::Winch => 1,
        }
    }
}

/// Whether `choice` compiles in two tiers here (Winch first, then
/// Cranelift).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn tiered(choice: CompilerChoice) -> bool {
    choice == CompilerChoice::Auto && WINCH_RUNS_HERE
}

/// Whether wasmtime's Winch compiles for this CPU.
const WINCH_RUNS_HERE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Compiles Wasm files once: in memory for the life of the [`Compiler`], and
/// on disk (when a cache directory is set) keyed by the file's content and
/// the engine's configuration, so a second run compiles nothing. Tiered
/// (see [`CompilerChoice::Auto`]): the Winch engine is made on first use,
/// and the Cranelift compiles it starts run on threads of their own.
pub(crate) struct Compiler {
    /// The engine of Cranelift code (and the runtime's).
    engine: Engine,
    /// How to make the Winch engine; `None` when Winch is not used.
    winch_config: Option<wasmtime::Config>,
    winch: std::sync::OnceLock<Option<Engine>>,
    choice: CompilerChoice,
    cache_dir: Option<PathBuf>,
    /// Each engine's part of every cache key (by [`Tier::index`]), computed
    /// once, when a file is first hashed (a start that finds its programs
    /// by file identity never needs it).
    engine_keys: [std::sync::OnceLock<[u8; 32]>; 2],
    compiled: Arc<Mutex<HashMap<[u8; 32], Compiled>>>,
    /// Cranelift's code of programs first run from Winch's, by path, once
    /// the background compile is done: restarts use it.
    optimised: Arc<Mutex<HashMap<PathBuf, Compiled>>>,
    /// The background compiles still running.
    background: Mutex<Vec<(PathBuf, std::thread::JoinHandle<()>)>>,
}

impl Compiler {
    /// `winch_config`: wasmtime's settings for the Winch engine (the
    /// runtime's, with Winch as the strategy), used unless `choice` is
    /// Cranelift.
    pub(crate) fn new(
        engine: Engine,
        winch_config: wasmtime::Config,
        choice: CompilerChoice,
        cache_dir: Option<PathBuf>,
    ) -> Compiler {
        let choice = match choice {
            CompilerChoice::Winch if !WINCH_RUNS_HERE => {
                tracing::warn!(
                    "Winch does not compile for this CPU ({}): programs are compiled by Cranelift",
                    std::env::consts::ARCH
                );
                CompilerChoice::Cranelift
            }
            CompilerChoice::Auto if !WINCH_RUNS_HERE => CompilerChoice::Cranelift,
            choice => choice,
        };
        Compiler {
            engine,
            winch_config: (choice != CompilerChoice::Cranelift).then_some(winch_config),
            winch: std::sync::OnceLock::new(),
            choice,
            cache_dir,
            engine_keys: Default::default(),
            compiled: Default::default(),
            optimised: Default::default(),
            background: Mutex::new(Vec::new()),
        }
    }

    /// The engine of a tier; `None` for Winch when it is not used or
    /// cannot be made.
    fn engine(&self, tier: Tier) -> Option<&Engine> {
        match tier {
            Tier::Cranelift => Some(&self.engine),
            Tier::Winch => self
                .winch
                .get_or_init(|| {
                    let config = self.winch_config.as_ref()?;
                    match Engine::new(config) {
                        Ok(engine) => {
                            crate::epoch::start_ticker(&engine);
                            Some(engine)
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Winch is unavailable: programs are compiled by Cranelift");
                            None
                        }
                    }
                })
                .as_ref(),
        }
    }

    fn engine_key(&self, tier: Tier) -> Option<[u8; 32]> {
        let engine = self.engine(tier)?;
        Some(*self.engine_keys[tier.index()].get_or_init(|| {
            let mut hasher = Sha256Hasher(Sha256::new());
            std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
            hasher.0.finalize().into()
        }))
    }

    /// Whether an entry of `tier` is what this compiler runs: Cranelift's
    /// always, Winch's unless Cranelift only is asked for (and under `auto`
    /// it still wants Cranelift's, see [`Compiler::wants_cranelift`]).
    fn accepts(&self, tier: Tier) -> bool {
        !matches!(
            (self.choice, tier),
            (CompilerChoice::Cranelift, Tier::Winch) | (CompilerChoice::Winch, Tier::Cranelift)
        )
    }

    /// The program compiled from `path` if the file is the one compiled
    /// before (same identity, size and times), so that its cache entry is
    /// known without reading and hashing it (for a 38 MB module that was
    /// most of a warm start): from memory, or from the disk cache. Cheap
    /// enough to call from async code; [`Compiler::compile`] does the rest.
    /// Under `auto`, a program found compiled by Winch only is not taken
    /// here: `compile` loads it and starts Cranelift's compile.
    pub(crate) fn cached(&self, path: &Path) -> Option<Compiled> {
        let dir = self.cache_dir.as_ref()?;
        let meta = std::fs::metadata(path).ok()?;
        let index = FileIndex::new(dir, path, fingerprint(&meta));
        let (kind, key, tier) = index.read()?;
        if !self.accepts(tier) || self.wants_cranelift(tier) {
            return None;
        }
        let compiled = self.load_keyed(&kind, &key, tier)?;
        tracing::debug!(program = %path.display(), tier = tier.name(), "loaded from the compile cache");
        Some(compiled)
    }

    /// Under `auto`, a program whose code is Winch's is to be compiled by
    /// Cranelift too, when this process may write the cache (behind the OS
    /// wall it may not: the supervisor's compiler does it).
    fn wants_cranelift(&self, tier: Tier) -> bool {
        self.choice == CompilerChoice::Auto
            && tier == Tier::Winch
            && self.cache_dir.as_deref().is_some_and(writable)
    }

    /// The compile cache's file of the program compiled from `path`, if the
    /// file is the one compiled before (as [`Compiler::cached`]), and the
    /// tier of its code.
    pub(crate) fn artifact(&self, path: &Path) -> Option<(PathBuf, Tier)> {
        let dir = self.cache_dir.as_ref()?;
        let meta = std::fs::metadata(path).ok()?;
        let (_, key, tier) = FileIndex::new(dir, path, fingerprint(&meta)).read()?;
        let file = dir.join(format!("{}.cwasm", hex::encode(key)));
        file.exists().then_some((file, tier))
    }

    /// Reads, checks and compiles `path` (blocking: call from a blocking
    /// task), once [`Compiler::cached`] has not found it by file identity:
    /// the file is read and hashed, and found again by its content if it was
    /// compiled before under another name or identity. Under `auto`, a
    /// program not compiled by Cranelift before is compiled by Winch (or
    /// found compiled by it) and Cranelift's compile starts in the
    /// background.
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
        let source = Source {
            reference,
            path,
            kind: &kind,
            bytes: &bytes,
            index: index.as_ref(),
        };
        if self.choice != CompilerChoice::Winch
            && let Some(compiled) = self.found(&source, Tier::Cranelift)
        {
            return Ok(compiled);
        }
        if self.choice != CompilerChoice::Cranelift {
            let winch = match self.found(&source, Tier::Winch) {
                Some(compiled) => Some(compiled),
                None => self.compile_with(&source, Tier::Winch).ok(),
            };
            if let Some(compiled) = winch {
                if self.wants_cranelift(Tier::Winch) {
                    self.optimise_later(reference, path, kind, bytes);
                }
                return Ok(compiled);
            }
        }
        self.compile_with(&source, Tier::Cranelift)
            .map_err(|error| invalid(&source, error))
    }

    /// The program of `source` compiled by `tier` before: in memory, or in
    /// the disk cache (its index entry then refreshed).
    fn found(&self, source: &Source<'_>, tier: Tier) -> Option<Compiled> {
        let key = self.key(source.bytes, tier)?;
        let compiled = self.load_keyed(source.kind, &key, tier)?;
        if let Some(index) = source.index {
            index.write(source.kind, &key, tier);
        }
        tracing::debug!(program = %source.path.display(), tier = tier.name(), "loaded from the compile cache");
        Some(compiled)
    }

    fn key(&self, bytes: &[u8], tier: Tier) -> Option<[u8; 32]> {
        Some(
            Sha256::new()
                .chain_update(self.engine_key(tier)?)
                .chain_update(bytes)
                .finalize()
                .into(),
        )
    }

    /// Compiles `source` with `tier`'s compiler, and caches it. Winch's
    /// error is logged here (Cranelift is tried next); `None`: no engine
    /// for the tier (Winch not in use).
    fn compile_with(
        &self,
        source: &Source<'_>,
        tier: Tier,
    ) -> Result<Compiled, Option<wasmtime::Error>> {
        let (Some(engine), Some(key)) = (self.engine(tier), self.key(source.bytes, tier)) else {
            return Err(None);
        };
        let started = std::time::Instant::now();
        let compiled = match compile_bytes(engine, source.kind, source.bytes) {
            Ok(compiled) => compiled,
            Err(error) => {
                if tier == Tier::Winch {
                    tracing::warn!(
                        "{}: Winch cannot compile {} ({}): it is compiled by Cranelift instead",
                        source.reference,
                        source.path.display(),
                        error.root_cause()
                    );
                }
                return Err(Some(error));
            }
        };
        tracing::debug!(program = %source.path.display(), tier = tier.name(), elapsed = ?started.elapsed(), "compiled");
        self.keep(&compiled, &key, tier, source.index);
        Ok(compiled)
    }

    /// Keeps a compiled program: in memory, on disk, in the file's index.
    fn keep(&self, compiled: &Compiled, key: &[u8; 32], tier: Tier, index: Option<&FileIndex>) {
        if let Some(dir) = &self.cache_dir {
            store_cached(compiled, &dir.join(format!("{}.cwasm", hex::encode(key))));
        }
        if let (Some(index), Some(dir)) = (index, &self.cache_dir) {
            index.replace(dir, &kind_of(compiled), key, tier);
        }
        self.compiled
            .lock()
            .expect("compile cache poisoned")
            .insert(*key, compiled.clone());
    }

    /// Starts Cranelift's compile of a program that runs from Winch's code:
    /// on a thread of its own, at the lowest priority, so that the program
    /// it is compiled for keeps the CPU. Its artifact replaces Winch's in
    /// the cache and the file's index, and restarts take it
    /// ([`Compiler::optimised`]). [`Compiler::finish_background`] waits for
    /// it; a process that exits before drops it (nothing is half-written:
    /// entries are renamed into place).
    fn optimise_later(&self, reference: &str, path: &Path, kind: Kind, bytes: Vec<u8>) {
        let mut background = self.background.lock().expect("compile cache poisoned");
        if background.iter().any(|(p, _)| p == path) {
            return;
        }
        let Some(key) = self.key(&bytes, Tier::Cranelift) else {
            return;
        };
        let (engine, dir) = (self.engine.clone(), self.cache_dir.clone());
        let (memory, optimised) = (self.compiled.clone(), self.optimised.clone());
        let (reference, owned_path) = (reference.to_owned(), path.to_owned());
        let thread = std::thread::Builder::new()
            .name("wpod-optimise".into())
            .spawn(move || {
                lower_priority();
                let started = std::time::Instant::now();
                match compile_bytes(&engine, &kind, &bytes) {
                    Ok(compiled) => {
                        tracing::debug!(program = %owned_path.display(), elapsed = ?started.elapsed(), "compiled by Cranelift in the background");
                        if let Some(dir) = &dir {
                            store_cached(&compiled, &dir.join(format!("{}.cwasm", hex::encode(key))));
                            if let Ok(meta) = std::fs::metadata(&owned_path) {
                                let index = FileIndex::new(dir, &owned_path, fingerprint(&meta));
                                index.replace(dir, &kind_of(&compiled), &key, Tier::Cranelift);
                            }
                        }
                        memory.lock().expect("compile cache poisoned").insert(key, compiled.clone());
                        optimised.lock().expect("compile cache poisoned").insert(owned_path, compiled);
                    }
                    Err(error) => {
                        tracing::warn!("{reference}: Cranelift cannot compile {} ({error:#}): it keeps running from Winch's code", owned_path.display());
                    }
                }
            });
        match thread {
            Ok(thread) => background.push((path.to_owned(), thread)),
            Err(error) => tracing::debug!(%error, "no background compile"),
        }
    }
}

impl Compiler {
    /// Cranelift's code for `path`, once its background compile is done.
    pub(crate) fn optimised(&self, path: &Path) -> Option<Compiled> {
        self.optimised
            .lock()
            .expect("compile cache poisoned")
            .get(path)
            .cloned()
    }

    /// The programs whose Cranelift compile is still running.
    pub(crate) fn compiling_in_background(&self) -> Vec<PathBuf> {
        self.background
            .lock()
            .expect("compile cache poisoned")
            .iter()
            .filter(|(_, thread)| !thread.is_finished())
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Waits for the background compiles to end.
    pub(crate) fn finish_background(&self) {
        let threads = std::mem::take(&mut *self.background.lock().expect("compile cache poisoned"));
        for (_, thread) in threads {
            let _ = thread.join();
        }
    }

    /// A program by its cache key: from memory, or from the disk cache.
    fn load_keyed(&self, kind: &Kind, key: &[u8; 32], tier: Tier) -> Option<Compiled> {
        if let Some(compiled) = self
            .compiled
            .lock()
            .expect("compile cache poisoned")
            .get(key)
        {
            return Some(compiled.clone());
        }
        let dir = self.cache_dir.as_ref()?;
        let file = dir.join(format!("{}.cwasm", hex::encode(key)));
        let compiled = self.load_cached(kind, &file, self.engine(tier)?)?;
        self.compiled
            .lock()
            .expect("compile cache poisoned")
            .insert(*key, compiled.clone());
        Some(compiled)
    }

    fn load_cached(&self, kind: &Kind, file: &Path, engine: &Engine) -> Option<Compiled> {
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
                let component = unsafe { Component::deserialize_file(engine, file) };
                component.map(Compiled::Component)
            }
            Kind::Module => {
                // SAFETY: the file is a wasmtime-serialized module from wpod's
                // private cache, as explained above.
                let module = unsafe { wasmtime::Module::deserialize_file(engine, file) };
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

fn compile_bytes(engine: &Engine, kind: &Kind, bytes: &[u8]) -> wasmtime::Result<Compiled> {
    match kind {
        Kind::Component => Component::new(engine, bytes).map(Compiled::Component),
        Kind::Module => wasmtime::Module::new(engine, bytes).map(Compiled::Module),
    }
}

/// Cranelift's error for a program it does not compile (`None`: it was
/// not tried, which cannot happen: Cranelift's engine is always there).
fn invalid(source: &Source<'_>, error: Option<wasmtime::Error>) -> ImageError {
    let message = error.map_or_else(|| "it was not compiled".to_owned(), |e| format!("{e:#}"));
    // The async ABI is what WASI 0.3 is built on: say how to turn it on,
    // not only what is missing.
    if message.contains("requires the component model async feature") {
        return ImageError::NeedsWasip3 {
            reference: source.reference.into(),
            path: source.path.to_owned(),
        };
    }
    ImageError::Invalid {
        reference: source.reference.into(),
        path: source.path.to_owned(),
        message,
    }
}

/// A Wasm file being compiled.
struct Source<'a> {
    reference: &'a str,
    path: &'a Path,
    kind: &'a Kind,
    bytes: &'a [u8],
    index: Option<&'a FileIndex>,
}

fn kind_of(compiled: &Compiled) -> Kind {
    match compiled {
        Compiled::Component(_) => Kind::Component,
        Compiled::Module(_) => Kind::Module,
    }
}

/// Whether this process may write in `dir` (behind the OS wall the compile
/// cache is mounted read-only).
fn writable(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
    }
    // No wall elsewhere: a cache that cannot be written only costs a
    // compile later.
    #[cfg(not(unix))]
    {
        let _ = dir;
        true
    }
}

/// The calling thread at the lowest scheduling priority (Linux: a thread's
/// nice value is its own), so that a background compile takes only what
/// the pods leave.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // `None`: the calling thread (a thread id, to Linux's setpriority).
        let _ = rustix::process::setpriority_process(None, 19);
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
pub(crate) fn looks_cached(cache_dir: &Path, program: &Path, choice: CompilerChoice) -> bool {
    let Ok(meta) = std::fs::metadata(program) else {
        return false;
    };
    let index = FileIndex::new(cache_dir, program, fingerprint(&meta));
    let Some((_, key, tier)) = index.read() else {
        return false;
    };
    // Under `auto`, Winch's code is a start, not the end: the supervisor's
    // compiler loads it and has Cranelift compile the program.
    let wanted = match choice {
        CompilerChoice::Winch if WINCH_RUNS_HERE => Tier::Winch,
        _ => Tier::Cranelift,
    };
    if tier != wanted {
        return false;
    }
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
    file: PathBuf,
    fingerprint: String,
}

impl FileIndex {
    fn new(cache_dir: &Path, program: &Path, fingerprint: String) -> FileIndex {
        let name = hex::encode(Sha256::digest(program.as_os_str().as_encoded_bytes()));
        FileIndex {
            file: cache_dir.join("files").join(name),
            fingerprint,
        }
    }

    /// The kind, key and tier recorded for the file, if it has not changed
    /// since (an entry without a tier is Cranelift's, as all were before).
    fn read(&self) -> Option<(Kind, [u8; 32], Tier)> {
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
        let tier = match lines.next() {
            None | Some("cranelift") => Tier::Cranelift,
            Some("winch") => Tier::Winch,
            Some(_) => return None,
        };
        Some((kind, key, tier))
    }

    /// Records Cranelift's or Winch's artifact for the file; Winch's that
    /// Cranelift's replaces is removed (it was compiled for this file, and
    /// is named by this index alone).
    fn replace(&self, cache_dir: &Path, kind: &Kind, key: &[u8; 32], tier: Tier) {
        if tier == Tier::Cranelift
            && let Some((_, old, Tier::Winch)) = self.read()
            && old != *key
        {
            let _ = std::fs::remove_file(cache_dir.join(format!("{}.cwasm", hex::encode(old))));
        }
        self.write(kind, key, tier);
    }

    fn write(&self, kind: &Kind, key: &[u8; 32], tier: Tier) {
        let kind = match kind {
            Kind::Component => "component",
            Kind::Module => "module",
        };
        let text = format!(
            "{}\n{kind}\n{}\n{}\n",
            self.fingerprint,
            hex::encode(key),
            tier.name()
        );
        let result = create_private_dir(self.file.parent().expect("in files/")).and_then(|()| {
            // Per thread: a background compile may write it at the same time.
            let temporary = self.file.with_extension(format!(
                "{}.{:?}.tmp",
                std::process::id(),
                std::thread::current().id()
            ));
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
