//! What every base's builder does ([`Builder`]), its options and what a build produced.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use runner::host::{human, sha256_file};
use runner::progress::secs;

use crate::stage::{StageTime, Timings};

/// How to build, beyond the board file. The OpenWrt-only settings are refused for Debian boards.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--imagebuilder PATH` (OpenWrt): an unpacked ImageBuilder directory or its tarball.
    pub imagebuilder: Option<PathBuf>,
    /// `--offline` (OpenWrt): never try to download the ImageBuilder.
    pub offline: bool,
    /// `--spind PATH` (OpenWrt): package this binary instead of cross-building it.
    pub spind_binary: Option<PathBuf>,
    /// `--out DIR` (OpenWrt): where outputs go instead of `target/image/BOARD/out/`.
    pub out_dir: Option<PathBuf>,
}

/// One thing a build produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    pub path: PathBuf,
    /// What it is, for the report.
    pub what: String,
}

/// What a build produced.
#[derive(Debug)]
pub struct Built {
    pub board: String,
    pub out_dir: PathBuf,
    pub artifacts: Vec<Artifact>,
    /// Each stage with its wall time and whether it came from the cache.
    pub stages: Vec<StageTime>,
    /// The whole build's wall time.
    pub total: Duration,
    /// What only one base has.
    pub detail: Detail,
}

#[derive(Debug)]
pub enum Detail {
    Debian {
        /// The raw disk image (the disk stage's cached output).
        disk: PathBuf,
        /// The merged root file system tar the disk was made from.
        root_tar: PathBuf,
    },
    OpenWrt {
        /// The `.ipk`.
        ipk: PathBuf,
        /// The stripped spind size in bytes.
        spind_size: u64,
        /// Set when the sysupgrade image could not be built: the message telling how to get it.
        missing: Option<String>,
    },
}

/// What every base's builder does. `cargo xtask image` calls these, so no flag is ignored for
/// one base: each either does that base's equivalent or says why it cannot.
pub trait Builder {
    /// Makes the next [`Builder::build`] make the root file system anew from the current
    /// packages (Debian: mmdebstrap again; OpenWrt: the ImageBuilder's `make image` again, which
    /// fetches its packages anew), or says why the board has no root file system to refresh.
    fn refresh_rootfs(&mut self) -> Result<()>;
    /// Builds every output of the board (cached stages are reused).
    fn build(&self) -> Result<Built>;
    /// Inspects what [`Builder::build`] made, as the tests do.
    fn check(&self, built: &Built) -> Result<()>;
    /// Prints the artifacts (size, sha256), the stage timings and what is missing.
    fn report(&self, built: &Built) {
        print_report(built);
    }
}

pub fn print_report(built: &Built) {
    eprintln!("\nxtask image: {} built in {}", built.board, secs(built.total));
    Timings::print(&built.stages);
    eprintln!("artifacts ({}):", built.out_dir.display());
    for a in &built.artifacts {
        let (size, sum) = if a.path.is_file() {
            (human(runner::host::file_size(&a.path)), sha256_file(&a.path).unwrap_or_default())
        } else {
            ("dir".to_string(), "-".to_string())
        };
        let name = a.path.strip_prefix(&built.out_dir).unwrap_or(&a.path).display().to_string();
        eprintln!(
            "  {name:<44} {size:>10}  sha256 {sum}{}",
            if a.what.is_empty() { String::new() } else { format!("\n      {}", a.what) }
        );
    }
    if let Detail::OpenWrt { missing: Some(m), .. } = &built.detail {
        eprintln!("\n{m}");
    }
}
