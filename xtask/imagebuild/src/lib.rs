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
//! - [`elf`]: reading binaries' ELF headers;
//! - [`oui`]: the vendor file spind reads (the IEEE registry, compact), laid into every image.
//!
//! Invariants: external commands run only through `runner` (xshell, with the host tools it
//! knows); `board` depends on nothing else of this crate but `elf` (for the arch's ELF facts),
//! and `debian` and `openwrt` do not use each other. Every board's outputs land in
//! `target/image/BOARD/out/`.

pub mod board;
mod build;
pub mod debian;
pub mod elf;
pub mod openwrt;
pub mod oui;
mod paths;
pub mod stage;
pub mod toolchain;

#[cfg(test)]
mod tidy;

use anyhow::Result;

pub use board::Board;
pub use build::{print_report, Artifact, Builder, Built, Detail, Options};
pub use paths::*;
pub use stage::StageTime;

/// The builder for a board.
pub fn builder(board: Board, opts: Options) -> Result<Box<dyn Builder>> {
    Ok(match board {
        Board::Debian(b) => Box::new(debian::DebianBuilder::new(b, opts)?),
        Board::OpenWrt(b) => Box::new(openwrt::OpenWrtBuilder::new(b, opts)),
    })
}
