//! TEMPORARY: replaced by the config branch's persist.rs at merge.
use std::io;
use std::path::{Path, PathBuf};

pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> io::Result<StateDir> {
        std::fs::create_dir_all(root.join("nodestore"))?;
        Ok(StateDir { root: root.to_path_buf() })
    }
    pub fn list_file(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.list"))
    }
    pub fn names_file(&self) -> PathBuf {
        self.root.join("names.conf")
    }
    pub fn nodepair_file(&self) -> PathBuf {
        self.root.join("nodepair.list")
    }
    pub fn nodestore_dir(&self) -> PathBuf {
        self.root.join("nodestore")
    }
}
