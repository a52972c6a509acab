//! Persistence helpers: crash-safe file replacement and the state directory layout
//! (`<state_dir>/{block,ignore,allow}.list`, `names.conf`, `nodepair.list`, `nodestore/`).
//!
//! Everything spind persists is small and rewritten whole, so "write a temp file, fsync, rename"
//! is enough to never leave a half-written list behind after a power cut (routers lose power).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `data` atomically: writes `<path>.tmp-<pid>` in the same directory
/// (rename is only atomic within one filesystem), fsyncs it, renames it over `path` and fsyncs
/// the directory. On any error the temp file is removed and the previous file is left intact.
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a file path", path.display()),
            )
        })?
        .to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);

    let mut created = false;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        created = true;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // Only remove what we created: the temp path may be something else entirely.
        if created {
            let _ = fs::remove_file(&tmp);
        }
        return Err(e);
    }
    // Make the rename itself durable. Some filesystems refuse fsync on directories; the data is
    // already safe then as far as we can make it, so that is not an error.
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The state directory could not be created or is not writable.
#[derive(Debug)]
pub struct StateError {
    pub dir: PathBuf,
    /// What we were doing ("creating", "writing a probe file in").
    pub action: &'static str,
    pub source: io::Error,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state directory {} is not usable ({} it failed: {}); choose another with --state-dir DIR",
            self.dir.display(),
            self.action,
            self.source
        )
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The directory holding everything spind persists (SPIN: `/etc/spin`).
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates `root` and `root/nodestore` if missing and proves `root` is writable, so that a
    /// bad state directory stops the daemon at start instead of losing the first block list.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let err = |action, source| StateError {
            dir: root.to_path_buf(),
            action,
            source,
        };
        fs::create_dir_all(root.join("nodestore")).map_err(|e| err("creating", e))?;
        // Permission bits say nothing when running as root (and read-only mounts ignore them),
        // so really write something.
        let probe = root.join(format!(".spind-probe-{}", std::process::id()));
        let written = File::create(&probe).and_then(|mut f| f.write_all(b"probe\n"));
        let _ = fs::remove_file(&probe);
        written.map_err(|e| err("writing a probe file in", e))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<name>.list`, e.g. `block.list`.
    pub fn list_file(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.list"))
    }

    /// `<root>/names.conf` (user-set device names).
    pub fn names_file(&self) -> PathBuf {
        self.root.join("names.conf")
    }

    /// `<root>/nodepair.list` (blocked node pairs).
    pub fn nodepair_file(&self) -> PathBuf {
        self.root.join("nodepair.list")
    }

    /// `<root>/nodestore/` (JSON of nodes taking part in flow blocks).
    pub fn nodestore_dir(&self) -> PathBuf {
        self.root.join("nodestore")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.list");
        atomic_write(&p, b"192.0.2.1\n").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"192.0.2.1\n");
        atomic_write(&p, b"").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"");
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("block.list")]);
    }

    #[test]
    fn failed_write_keeps_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("names.conf");
        atomic_write(&p, b"old\n").unwrap();
        // A directory where the temp file should go makes the write impossible.
        let tmp = dir
            .path()
            .join(format!("names.conf.tmp-{}", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        assert!(atomic_write(&p, b"new\n").is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old\n");
        assert!(tmp.is_dir(), "must not remove what it did not create");

        // Renaming over a directory fails after the temp file was written: it is cleaned up.
        let d = dir.path().join("adir");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("keep"), b"x").unwrap();
        assert!(atomic_write(&d, b"new").is_err());
        assert!(d.join("keep").exists());
        assert!(!dir
            .path()
            .join(format!("adir.tmp-{}", std::process::id()))
            .exists());
    }

    #[test]
    fn write_into_a_file_as_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("file");
        fs::write(&f, b"x").unwrap();
        assert!(atomic_write(&f.join("sub"), b"y").is_err());
        assert_eq!(fs::read(&f).unwrap(), b"x");
    }

    #[test]
    fn state_dir_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/spin");
        let s = StateDir::open(&root).unwrap();
        assert!(root.join("nodestore").is_dir());
        assert_eq!(s.root(), root);
        assert_eq!(s.list_file("block"), root.join("block.list"));
        assert_eq!(s.names_file(), root.join("names.conf"));
        assert_eq!(s.nodepair_file(), root.join("nodepair.list"));
        assert_eq!(s.nodestore_dir(), root.join("nodestore"));
        // Only the nodestore: the probe is gone.
        assert_eq!(fs::read_dir(&root).unwrap().count(), 1);
        // Opening again is fine.
        StateDir::open(&root).unwrap();
    }

    #[test]
    fn state_dir_under_a_file_fails_with_a_helpful_message() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plainfile");
        fs::write(&f, b"x").unwrap();
        let root = f.join("spin");
        let e = StateDir::open(&root).unwrap_err().to_string();
        assert!(e.contains(&root.display().to_string()), "{e}");
        assert!(e.contains("--state-dir"), "{e}");
        assert!(e.contains("os error"), "{e}");
    }
}
