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
use std::io::Read;
use std::path::{Path, PathBuf};

mod cache;
mod detect;

pub use cache::CompilerChoice;
pub(crate) use cache::{Compiled, Compiler, Tier, forget_cached};
#[cfg(target_os = "linux")]
pub(crate) use cache::{create_private_dir, looks_cached, tiered};

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

/// `image.json`: an OCI image config. Its top-level keys are checked (a
/// key of `config` written beside it would otherwise be ignored); inside
/// `config`, the keys wpod reads are checked for their types and Docker's
/// and OCI's others are left alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The OCI fields are only named, so that they are accepted.
struct ImageJson {
    #[serde(default)]
    config: Option<ImageConfig>,
    architecture: Option<serde::de::IgnoredAny>,
    os: Option<serde::de::IgnoredAny>,
    #[serde(rename = "os.version")]
    os_version: Option<serde::de::IgnoredAny>,
    #[serde(rename = "os.features")]
    os_features: Option<serde::de::IgnoredAny>,
    variant: Option<serde::de::IgnoredAny>,
    rootfs: Option<serde::de::IgnoredAny>,
    history: Option<serde::de::IgnoredAny>,
    created: Option<serde::de::IgnoredAny>,
    author: Option<serde::de::IgnoredAny>,
}

/// Reads the `image.json` at `path` (its `bytes`): its config, or what is
/// wrong with it, with the key's path.
fn parse_image_json(reference: &str, path: &Path, bytes: &[u8]) -> Result<ImageConfig, ImageError> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let json: ImageJson = serde_path_to_error::deserialize(&mut reader).map_err(|error| {
        let key = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let message = match message.find(" at line ") {
            Some(at) => message[..at].to_owned(),
            None => message,
        };
        let hint = if message.starts_with("unknown field") {
            "the image's settings (Entrypoint, Cmd, Env, WorkingDir) go under `config`"
        } else {
            "image.json holds an OCI image config: {\"config\": {\"Entrypoint\": [\"prog\"], \"Cmd\": [\"arg\"], \"Env\": [\"K=V\"], \"WorkingDir\": \"/\"}}"
        };
        ImageError::BadConfig {
            reference: reference.into(),
            path: path.to_owned(),
            key: if key == "." { String::new() } else { format!("{key}: ") },
            message: format!("{message}; {hint}"),
        }
    })?;
    Ok(json.config.unwrap_or_default())
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
    #[error("image `{reference}`: {} is not a valid WebAssembly program: {message}; build it again (a cut-short copy, or a proposal wasmtime 48 lacks, ends this way)", path.display())]
    Invalid {
        reference: String,
        path: PathBuf,
        message: String,
    },
    /// A WASI 0.3 component (the component model's async ABI) in a run
    /// without `--wasip3`.
    #[error("image `{reference}`: {} is a WASI 0.3 component (it uses the component model's async ABI); run it with `wpod run --wasip3` (or WPOD_WASIP3=1): wasmtime 48's WASI 0.3 is experimental, and turning it on slows every program a little", path.display())]
    NeedsWasip3 { reference: String, path: PathBuf },
    #[error("image `{reference}`: {} is not a WASI command: {message}; build it as a program with a `main` (a wasi:cli/run component or a module exporting `_start`)", path.display())]
    NotCommand {
        reference: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "image `{reference}`: program `{program}` not found in the image (searched {searched}); name one the image has in the container's command, by its path or along the image's PATH"
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
    #[error("image `{reference}`: {}: {key}{message}", path.display())]
    BadConfig {
        reference: String,
        path: PathBuf,
        /// The key at fault and `: `, or nothing for the file as a whole.
        key: String,
        message: String,
    },
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
            | ImageError::NeedsWasip3 { .. }
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
                    let config =
                        parse_image_json(reference, &pulled.path.join("image.json"), &bytes)?;
                    Ok(Image {
                        wasm_file: None,
                        rootfs: Some(pulled.path.join("rootfs")),
                        config,
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
                    let config = parse_image_json(reference, &config_path, &bytes)?;
                    return Ok(Image {
                        wasm_file: None,
                        rootfs: Some(dir.join("rootfs")),
                        config,
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
