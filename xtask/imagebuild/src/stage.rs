//! Cached stages: a stage's output is a file named by the hash of its inputs ([`Key`]), reused
//! while the inputs stay the same; stage timings for the report; fixed ids for reproducible images.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use runner::progress::secs;
use sha2::{Digest, Sha256};

/// Part of every stage key: bump to rebuild everything (the root file system included).
pub const BUILDER_VERSION: &str = "spin-image-1";
/// Part of the overlay and disk keys: bump when the assembly (merging, partitioning, file
/// systems) changes, without rebuilding the root file system.
pub const ASSEMBLY_VERSION: &str = "assembly-3";

/// Incremental key builder: every input is length-prefixed so fields cannot run together.
pub struct Key(Sha256);

impl Key {
    pub fn new(stage: &str) -> Self {
        let mut k = Key(Sha256::new());
        k.add(BUILDER_VERSION).add(stage);
        k
    }
    pub fn add(&mut self, s: impl AsRef<[u8]>) -> &mut Self {
        let s = s.as_ref();
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s);
        self
    }
    pub fn add_file(&mut self, p: &Path) -> Result<&mut Self> {
        let data = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        self.add(p.to_string_lossy().as_bytes());
        Ok(self.add(data))
    }
    /// 16 hex digits: short enough for file names, long enough not to collide.
    pub fn finish(&self) -> String {
        runner::host::hex(&self.0.clone().finalize())[..16].to_string()
    }
}

/// A stage's output: a path, the key it was made under, whether it came from the cache.
pub struct Stage {
    pub path: PathBuf,
    pub key: String,
    pub cached: bool,
}

/// One stage in the report: name, wall time, from the cache.
#[derive(Clone, Debug)]
pub struct StageTime {
    pub name: String,
    pub time: Duration,
    pub cached: bool,
}

/// Results that know whether they came from the cache.
pub trait Cached {
    fn cached(&self) -> bool;
}
impl Cached for Stage {
    fn cached(&self) -> bool {
        self.cached
    }
}
impl Cached for Vec<PathBuf> {
    fn cached(&self) -> bool {
        false
    }
}

#[derive(Default)]
pub struct Timings(pub Vec<StageTime>);

impl Timings {
    pub fn time<T>(&mut self, name: &str, cached: bool, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let r = f().with_context(|| format!("stage {name}"))?;
        self.0.push(StageTime { name: name.to_string(), time: t.elapsed(), cached });
        Ok(r)
    }
    pub fn time_cached<T: Cached>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        eprintln!("xtask image: stage {name}");
        let r = f().with_context(|| format!("stage {name}"))?;
        self.0.push(StageTime { name: name.to_string(), time: t.elapsed(), cached: r.cached() });
        Ok(r)
    }
    pub fn print(stages: &[StageTime]) {
        eprintln!("stage timings:");
        for s in stages {
            eprintln!("  {:<28} {:>8}{}", s.name, secs(s.time), if s.cached { "  (cached)" } else { "" });
        }
    }
}

/// Removes older outputs of a stage (`PREFIX-*` other than `keep`), so the cache holds one.
pub fn prune(dir: &Path, prefix: &str, keep: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if file_name(&p).starts_with(prefix) && p != keep {
                if p.is_dir() {
                    let _ = std::fs::remove_dir_all(&p);
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
}

/// A UUID derived from the board and a purpose: fixed across builds (reproducible images),
/// different between boards and purposes. Formatted as a version-4-shaped UUID.
pub fn fixed_uuid(board: &str, purpose: &str) -> String {
    let d = Sha256::digest(format!("spin-image:{board}:{purpose}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = runner::host::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

pub fn file_name(p: &Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn mkdirs(d: &Path) -> Result<()> {
    std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))
}

/// Removes `dir` if it exists and creates it empty.
pub fn reset_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    mkdirs(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_uuids_are_stable_and_distinct() {
        let a = fixed_uuid("x86_64", "root");
        assert_eq!(a, fixed_uuid("x86_64", "root"));
        assert_ne!(a, fixed_uuid("x86_64", "boot"));
        assert_ne!(a, fixed_uuid("rpi3", "root"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn keys_separate_fields() {
        let k1 = Key::new("s").add("ab").add("c").finish();
        let k2 = Key::new("s").add("a").add("bc").finish();
        assert_ne!(k1, k2);
        assert_eq!(k1.len(), 16);
    }
}
