//! wpod's per-user state folder: where each pod's private folder (its
//! emptyDirs, the OS wall's root) is made.
//!
//! It is `$XDG_RUNTIME_DIR/wpod` (the user's own runtime folder, as podman
//! uses), else `$TMPDIR/wpod-<uid>`: never one folder shared by every user.
//! A shared temp folder is writable by anyone, so another user may have made
//! the folder first, or left a symlink in its place; wpod checks the folder
//! it opens (not the path it names), and refuses one that is a symlink, is
//! not a directory, belongs to someone else, or that others may write to.
//! Inside a checked folder only its owner can create entries, so the levels
//! below it are made with exclusive `mkdir`s (an existing entry is an error,
//! never reused).

use std::io;
use std::path::{Path, PathBuf};

/// `$XDG_RUNTIME_DIR/wpod` when that is set (and absolute), else
/// `$TMPDIR/wpod-<uid>` (`%TEMP%\wpod` on Windows).
pub(crate) fn default_root() -> PathBuf {
    if let Some(runtime_dir) = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
    {
        return runtime_dir.join("wpod");
    }
    #[cfg(unix)]
    {
        std::env::temp_dir().join(format!("wpod-{}", rustix::process::geteuid().as_raw()))
    }
    #[cfg(not(unix))]
    {
        std::env::temp_dir().join("wpod")
    }
}

/// Makes `root` (and missing parents) if needed, then checks the folder
/// itself, opened without following a symlink: a directory, owned by the
/// caller, writable by nobody else. A folder of the caller's with a looser
/// mode is tightened to 0700.
///
/// # Errors
///
/// The reason and the fix in the error's text (`PermissionDenied` for a
/// folder that is not the caller's).
pub(crate) fn ensure_private_root(root: &Path) -> io::Result<()> {
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match create_dir_0700(root) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    check_private(root)
}

/// Makes `<root>/<name>` with mode 0700; an existing entry is an error.
pub(crate) fn create_private_child(root: &Path, name: &str) -> io::Result<PathBuf> {
    let path = root.join(name);
    create_dir_0700(&path)?;
    Ok(path)
}

fn create_dir_0700(path: &Path) -> io::Result<()> {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

#[cfg(unix)]
fn check_private(root: &Path) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let refuse = |problem: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} {problem}: another user may have made it to catch your pods' files; remove it, or set XDG_RUNTIME_DIR (or TMPDIR) to a folder of your own",
                root.display()
            ),
        )
    };
    let dir = match rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            let is_link = std::fs::symlink_metadata(root).is_ok_and(|m| m.file_type().is_symlink());
            return Err(refuse(
                if is_link {
                    "is a symlink"
                } else {
                    "is not a directory"
                }
                .into(),
            ));
        }
        Err(errno) => return Err(errno.into()),
    };
    let stat = rustix::fs::fstat(&dir)?;
    let me = rustix::process::geteuid().as_raw();
    if stat.st_uid != me {
        return Err(refuse(format!(
            "belongs to uid {}, not to you (uid {me})",
            stat.st_uid
        )));
    }
    if stat.st_mode & 0o077 != 0 {
        // Ours, made by an older wpod or by hand: close it to others.
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(root: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(root)?.is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a directory", root.display()),
        ))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn made_with_mode_0700_and_tightened_when_ours() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("a").join("wpod-test");
        ensure_private_root(&root).unwrap();
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&p.metadata().unwrap().permissions()) & 0o777
        };
        assert_eq!(mode(&root), 0o700);
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        ensure_private_root(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        let child = create_private_child(&root, "pod-1-0").unwrap();
        assert_eq!(mode(&child), 0o700);
        assert_eq!(
            create_private_child(&root, "pod-1-0").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn a_symlink_or_a_file_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let elsewhere = temp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = temp.path().join("wpod-link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let error = ensure_private_root(&link).unwrap_err();
        assert!(error.to_string().contains("is a symlink"), "{error}");
        let file = temp.path().join("wpod-file");
        std::fs::write(&file, "").unwrap();
        let error = ensure_private_root(&file).unwrap_err();
        assert!(error.to_string().contains("is not a directory"), "{error}");
    }
}
