//! Router images for the boards in `board-configs/` (`cargo xtask image --board NAME`).
//!
//! Map (each module opens with its line of it):
//! - [`board`]: the board files, typed (an enum tagged by `base`) and validated;
//! - [`Builder`]: what every base's builder does (build, refresh the root file system, check,
//!   report), implemented by [`debian::DebianBuilder`] and [`openwrt::OpenWrtBuilder`];
//! - [`debian`]: spind, mmdebstrap root file system, overlay, disk assembly, outputs (img.xz from
//!   cached xz blocks, qcow2, OVA) and their inspection;
//! - [`openwrt`]: toolchain, cross-build, `.ipk` package, ImageBuilder;
//! - [`toolchain`]: the Rust side of the host (targets, the MIPS nightly, zig), shared by both;
//! - [`stage`]: cached stages, keys, timings, fixed ids;
//! - [`elf`]: reading binaries' ELF headers.
//!
//! Invariants: external commands run only through `runner` (xshell, with the host tools it
//! knows); `board` depends on nothing else of this crate but `elf` (for the arch's ELF facts),
//! and `debian` and `openwrt` do not use each other. Every board's outputs land in
//! `target/image/BOARD/out/`.

pub mod board;
pub mod debian;
pub mod elf;
pub mod openwrt;
pub mod stage;
pub mod toolchain;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use runner::host::{human, sha256_file};
use runner::progress::secs;

pub use board::Board;
pub use stage::StageTime;

/// The workspace root (this crate lives in `xtask/imagebuild/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("workspace root").to_path_buf()
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// `target/image/BOARD/`: a board's cached stages and logs.
pub fn board_dir(board: &str) -> PathBuf {
    target_dir().join("image").join(board)
}

/// `target/image/BOARD/out/`: where every board's outputs land.
pub fn out_dir(board: &str) -> PathBuf {
    board_dir(board).join("out")
}

/// Timestamps inside images when SOURCE_DATE_EPOCH is not set: 2025-01-01T00:00:00Z.
pub const DEFAULT_EPOCH: u64 = 1_735_689_600;

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

/// The builder for a board.
pub fn builder(board: Board, opts: Options) -> Result<Box<dyn Builder>> {
    Ok(match board {
        Board::Debian(b) => Box::new(debian::DebianBuilder::new(b, opts)?),
        Board::OpenWrt(b) => Box::new(openwrt::OpenWrtBuilder::new(b, opts)),
    })
}

pub fn print_report(built: &Built) {
    eprintln!("\nxtask image: {} built in {}", built.board, secs(built.total));
    stage::Timings::print(&built.stages);
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

/// SOURCE_DATE_EPOCH if set (an error if it is no number), else `default`.
pub fn source_date_epoch(default: impl FnOnce() -> u64) -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        Err(_) => Ok(default()),
    }
}

/// A shell in the workspace root: what every command of the builders runs in.
pub fn shell() -> Result<runner::Shell> {
    let sh = runner::Shell::new()?;
    sh.change_dir(root());
    Ok(sh)
}

/// The cargo that runs xtask (`CARGO`), else `cargo` from the PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
