//! OpenWrt boards (`base = "openwrt"`; GL.iNet MT3000/MT6000 on mediatek/filogic, AR150 on
//! ath79): spind cross-built as a static musl binary ([`cross`], with [`crate::toolchain`]),
//! checked under qemu-user, packed as an `.ipk` with a procd init script and UCI config
//! ([`package`], format in [`ipk`]), a `FILES` overlay for the ImageBuilder, and, given an
//! ImageBuilder (or online, downloaded and checked against the pinned sha256), the sysupgrade
//! image ([`imagebuilder`]).
//!
//! Where it writes: work files in `target/image/BOARD/`, outputs in `target/image/BOARD/out/`
//! (the `.ipk`, `files/`, and the ImageBuilder's `openwrt/`), ImageBuilder downloads and
//! unpacked ImageBuilders in `target/openwrt/{dl,ib}/` (shared by the boards).

pub mod cross;
pub mod imagebuilder;
pub mod ipk;
pub mod package;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use runner::host::{ensure, file_size, Need};

use crate::board::{OpenWrtBoard, OpenWrtOutput};
use crate::build::{Artifact, Built, Detail, Options};
use crate::stage::StageTime;

/// The builder of an OpenWrt board.
pub struct OpenWrtBuilder {
    pub board: OpenWrtBoard,
    pub opts: Options,
    /// `--refresh-rootfs`: run `make image` even when its inputs did not change.
    refresh_image: bool,
}

impl OpenWrtBuilder {
    pub fn new(board: OpenWrtBoard, opts: Options) -> OpenWrtBuilder {
        OpenWrtBuilder { board, opts, refresh_image: false }
    }

    fn out_dir(&self) -> std::path::PathBuf {
        self.opts.out_dir.clone().unwrap_or_else(|| crate::paths::out_dir(&self.board.name))
    }
}

fn stage(stages: &mut Vec<StageTime>, name: impl Into<String>, t: Instant) {
    stages.push(StageTime { name: name.into(), time: t.elapsed(), cached: false });
}

impl crate::build::Builder for OpenWrtBuilder {
    /// The root file system of an OpenWrt image is the ImageBuilder's: `make image` runs again
    /// (fetching its packages anew) even with unchanged inputs.
    fn refresh_rootfs(&mut self) -> Result<()> {
        if !self.board.outputs.contains(&OpenWrtOutput::Sysupgrade) {
            bail!(
                "--refresh-rootfs: {} builds no sysupgrade image (outputs in {}), so it has no root file system to refresh",
                self.board.name,
                self.board.file.display()
            );
        }
        self.refresh_image = true;
        Ok(())
    }

    fn build(&self) -> Result<Built> {
        let t0 = Instant::now();
        let board = &self.board;
        let opts = &self.opts;
        let mut stages = Vec::new();
        let work = crate::paths::board_dir(&board.name);
        let out = self.out_dir();
        crate::stage::mkdirs(&work)?;
        crate::stage::mkdirs(&out)?;

        let t = Instant::now();
        ensure(&[Need::OpenWrt])?;
        crate::toolchain::require_rustup()?;
        stage(&mut stages, "host tools", t);

        // spind for the target, stripped, checked.
        let t = Instant::now();
        let built = match &opts.spind_binary {
            Some(p) => p.clone(),
            None => cross::cross_build(board.arch)?,
        };
        stage(&mut stages, format!("spind ({})", board.rust_target), t);
        let t = Instant::now();
        let spind = work.join("spind");
        package::copy(&built, &spind)?;
        cross::strip(&spind)?;
        let info = cross::check_binary(board.arch, &spind)?;
        let spind_size = file_size(&spind);
        eprintln!("xtask: spind: {} ({} bytes)", info.describe(), spind_size);
        let ran = cross::run_under_qemu(board.arch, &spind, &work)?;
        eprintln!("xtask: spind under {}: {}", board.arch.qemu(), ran.lines().next().unwrap_or(""));
        stage(&mut stages, "check under qemu-user", t);
        let mut artifacts = vec![Artifact { path: spind.clone(), what: format!("spind, {}", info.describe()) }];

        // The package and the overlay.
        let t = Instant::now();
        let epoch = crate::paths::source_date_epoch(package::source_date_epoch)?;
        let ipk = package::build_ipk(board, &spind, &work, &out, epoch)?;
        // Read the package back: layout, control fields, modes, the binary's architecture.
        package::verify_ipk(board, &ipk, &work.join("ipk-check"))?;
        artifacts
            .push(Artifact { path: ipk.clone(), what: format!("opkg package for {}", board.openwrt.package_arch) });
        let files = out.join("files");
        package::build_overlay(&files)?;
        artifacts.push(Artifact { path: files.clone(), what: "FILES overlay for the ImageBuilder".into() });
        stage(&mut stages, "package + overlay", t);

        let mut missing = None;
        if board.outputs.contains(&OpenWrtOutput::Sysupgrade) {
            let t = Instant::now();
            match imagebuilder::resolve_imagebuilder(board, opts)? {
                Ok(ib) => {
                    let images = imagebuilder::run_imagebuilder(
                        board,
                        &ib,
                        &ipk,
                        &files,
                        &out.join("openwrt"),
                        self.refresh_image,
                    )?;
                    artifacts.extend(images);
                    stage(&mut stages, "ImageBuilder make image", t);
                }
                Err(why) if self.refresh_image => bail!(
                    "--refresh-rootfs: an OpenWrt image's root file system is made by the ImageBuilder's make image, and there is none: {why}"
                ),
                Err(why) => missing = Some(missing_message(board, &why)),
            }
        }
        Ok(Built {
            board: board.name.clone(),
            out_dir: out,
            artifacts,
            stages,
            total: t0.elapsed(),
            detail: Detail::OpenWrt { ipk, spind_size, missing },
        })
    }

    /// The package read back (layout, control fields, modes, the binary's architecture), the
    /// overlay's first-boot script, and the sysupgrade image when one was built.
    fn check(&self, built: &Built) -> Result<()> {
        let Detail::OpenWrt { ipk, missing, .. } = &built.detail else {
            bail!("{} was not built as an OpenWrt image", built.board);
        };
        let mut checks = 0;
        package::verify_ipk(&self.board, ipk, &crate::paths::board_dir(&self.board.name).join("inspect.tmp"))?;
        checks += 1;
        let script = built.out_dir.join("files/etc/uci-defaults/95-valibox");
        if !script.is_file() {
            bail!("the ImageBuilder overlay has no {}", script.display());
        }
        checks += 1;
        if self.board.outputs.contains(&OpenWrtOutput::Sysupgrade) {
            match missing {
                Some(_) => {
                    eprintln!("xtask image: {}: no sysupgrade image to inspect (no ImageBuilder)", self.board.name)
                }
                None => {
                    let image = built.artifacts.iter().find(|a| a.what.contains("sysupgrade"));
                    match image {
                        Some(a) if file_size(&a.path) > 0 => checks += 1,
                        _ => bail!("{}: the ImageBuilder made no (non-empty) sysupgrade image", self.board.name),
                    }
                }
            }
        }
        eprintln!("xtask image: inspection of {}: {checks} checks passed", self.board.name);
        Ok(())
    }
}

/// Sum of the stage times whose name starts with `prefix`.
pub fn stage_time(built: &Built, prefix: &str) -> Duration {
    built.stages.iter().filter(|s| s.name.starts_with(prefix)).map(|s| s.time).sum()
}

/// The message printed when there is no ImageBuilder.
pub fn missing_message(board: &OpenWrtBoard, why: &str) -> String {
    let file = board.imagebuilder_file();
    let check = match &board.openwrt.imagebuilder_sha256 {
        Some(sha) => format!("  check it:\n    echo '{sha}  {file}' | sha256sum -c\n"),
        None => format!(
            "  {} pins no verified sha256 for it: compare it with OpenWrt's sha256sums file next to it\n",
            board.file_name()
        ),
    };
    format!(
        "xtask: {name}: built spind, the .ipk and the FILES overlay, but NOT the sysupgrade image:\n  \
         no OpenWrt ImageBuilder ({why}).\n  \
         On a machine with internet access, download\n    {url}\n{check}  \
         copy it here and run\n    cargo xtask image --board {name} --imagebuilder /path/to/{file}\n  \
         (an unpacked ImageBuilder directory works too). To add spind to a router that already runs\n  \
         OpenWrt {release}, copy the .ipk to it and `opkg install` it (README, GL.iNet).",
        name = board.name,
        url = board.openwrt.imagebuilder_url,
        release = board.release,
    )
}
