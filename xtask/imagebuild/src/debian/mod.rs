//! Debian boards (`base = "debian"`): stages, each cached under `target/image/<board>/` by a
//! hash of its inputs:
//!
//! | stage   | output                         | key (sha256 of)                                              |
//! |---------|--------------------------------|--------------------------------------------------------------|
//! | spind   | `spind` (stripped release)     | cargo decides; the stage's *output* hash feeds the overlay   |
//! | rootfs  | `rootfs-KEY.tar` (mmdebstrap)  | release, arch, mirror, components, packages, path filters, initramfs modules, hook scripts, SOURCE_DATE_EPOCH |
//! | overlay | `root-KEY.tar` (rootfs+overlay)| rootfs key, `image/debian/overlay` files, board network, spind hash |
//! | disk    | `disk-KEY.img` (raw)           | root key, disk layout, kernel cmdline/consoles, builder version |
//! | outputs | `out/spin-BOARD.*`             | disk key + output kind                                       |
//!
//! A changed spind changes only the overlay key, so only overlay, disk and outputs rerun.
//! Nothing is mounted and no loop device is used: partitions are written into the image file at
//! their offsets (sfdisk, mkfs.fat --offset + mtools, mkfs.ext4 -E offset= -d TAR).

mod disk;
pub mod inspect;
mod outputs;
mod ova;
mod overlay;
mod rootfs;
mod spind;
pub mod xzblocks;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use runner::host::Need;

pub use disk::{cmdline, layout, sfdisk_script, Layout};

use crate::board::DebianBoard;
use crate::build::{Artifact, Built, Detail, Options};
use crate::stage::{mkdirs, Timings};

/// `image/debian/`: hooks and the overlay laid over the root file system.
pub fn image_dir() -> PathBuf {
    crate::paths::root().join("image").join("debian")
}

/// Paths and fixed settings of one board's build.
pub struct Ctx<'a> {
    pub board: &'a DebianBoard,
    /// `target/image/<board>/`
    pub dir: PathBuf,
    /// `target/image/<board>/out/`
    pub out: PathBuf,
    /// `target/image/<board>/logs/`
    pub logs: PathBuf,
    pub epoch: u64,
}

impl<'a> Ctx<'a> {
    pub fn new(board: &'a DebianBoard) -> Result<Self> {
        let dir = crate::paths::board_dir(&board.name);
        let out = crate::paths::out_dir(&board.name);
        let logs = dir.join("logs");
        for d in [&dir, &out, &logs] {
            mkdirs(d)?;
        }
        let epoch = crate::paths::source_date_epoch(|| crate::paths::DEFAULT_EPOCH)?;
        Ok(Ctx { board, dir, out, logs, epoch })
    }
}

/// The builder of a Debian board.
pub struct DebianBuilder {
    pub board: DebianBoard,
    refresh_rootfs: bool,
}

impl DebianBuilder {
    pub fn new(board: DebianBoard, opts: Options) -> Result<DebianBuilder> {
        for (flag, given) in [
            ("--imagebuilder", opts.imagebuilder.is_some()),
            ("--offline", opts.offline),
            ("--spind", opts.spind_binary.is_some()),
            ("--out", opts.out_dir.is_some()),
        ] {
            if given {
                bail!(
                    "{flag} is for OpenWrt boards; {} is a Debian board (outputs in {})",
                    board.name,
                    crate::paths::out_dir(&board.name).display()
                );
            }
        }
        Ok(DebianBuilder { board, refresh_rootfs: false })
    }

    /// The host tools this board needs (installed as root on Debian), binfmt for a foreign arch.
    fn host_tools(&self) -> Result<()> {
        let b = &self.board;
        let mut needs = vec![Need::Image];
        if b.is_foreign() {
            needs.push(Need::ImageForeign);
        }
        runner::host::ensure(&needs)?;
        if b.is_foreign() {
            runner::host::ensure_binfmt(b.arch.qemu())?;
        }
        Ok(())
    }
}

impl crate::build::Builder for DebianBuilder {
    fn refresh_rootfs(&mut self) -> Result<()> {
        self.refresh_rootfs = true;
        Ok(())
    }

    /// Every stage, printing timings and artifacts.
    fn build(&self) -> Result<Built> {
        let t0 = Instant::now();
        let board = &self.board;
        let mut timings = Timings::default();
        let ctx = Ctx::new(board)?;

        timings.time("host tools", false, || self.host_tools())?;
        // spind and the root file system do not depend on each other: build them side by side
        // (the release build's long LTO link leaves a core for mmdebstrap).
        let (spind, rootfs) = std::thread::scope(|s| {
            let spind = s.spawn(|| {
                let t = Instant::now();
                eprintln!("xtask image: stage spind");
                spind::build(&ctx).map(|st| (st, t.elapsed())).context("stage spind")
            });
            let rootfs = timings.time_cached("rootfs (mmdebstrap)", || rootfs::build(&ctx, self.refresh_rootfs));
            let spind = spind.join().map_err(|_| anyhow::anyhow!("stage spind panicked")).and_then(|r| r);
            (spind, rootfs)
        });
        let (spind, spind_time) = spind?;
        let rootfs = rootfs?;
        let at = timings.0.len() - 1;
        timings.0.insert(
            at,
            crate::stage::StageTime { name: "spind (cargo build)".into(), time: spind_time, cached: false },
        );
        let root = timings.time_cached("overlay", || overlay::build(&ctx, &rootfs, &spind))?;
        let disk = timings.time_cached("disk", || disk::build(&ctx, &root, &ctx.dir))?;
        let artifacts = timings.time_cached("outputs", || outputs::build(&ctx, &disk))?;
        Ok(Built {
            board: board.name.clone(),
            out_dir: ctx.out.clone(),
            artifacts: artifacts.into_iter().map(|path| Artifact { path, what: String::new() }).collect(),
            stages: timings.0,
            total: t0.elapsed(),
            detail: Detail::Debian { disk: disk.path.clone(), root_tar: root.path.clone() },
        })
    }

    /// The image inspected (partitions, files, outputs) and its disk assembled a second time
    /// from the same root tar, compared bit for bit.
    fn check(&self, built: &Built) -> Result<()> {
        inspect::check_built(&self.board, built)?;
        inspect::check_reproducible(&self.board, built)?;
        eprintln!("xtask image: inspection of {} passed", self.board.name);
        Ok(())
    }
}
