//! `cargo xtask setup`: everything the tests and image builds need on this host, in one go.
//! The Debian packages come from the one list in `runner::host::TOOLS` (installed as root on
//! Debian 12, with bookworm-backports for QEMU 10 and e2fsprogs >= 1.47.1); the Rust parts
//! (targets of every board, the pinned MIPS nightly with rust-src, the pinned zig, rustfmt and
//! clippy for the gates, cargo-fuzz for the fuzz layer) come from rustup. `cargo xtask test` runs it first; elsewhere (not
//! root, not Debian) it names the commands to run.

use anyhow::{bail, Result};
use imagebuild::board::{self, Board};
use imagebuild::toolchain;
use runner::host::{self, Need};

/// What `cargo xtask test` needs, every layer.
pub const ALL: &[Need] =
    &[Need::SpindTests, Need::Image, Need::ImageForeign, Need::OpenWrt, Need::ImageBuilder, Need::QemuTest];

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        None => setup(),
        Some("--check") => check(),
        Some(other) => bail!("xtask setup: unknown argument {other:?} (--check: only say what is missing)"),
    }
}

/// Installs what is missing (as root on Debian); otherwise an error naming what and how.
pub fn setup() -> Result<()> {
    let missing = host::missing(ALL);
    if !missing.is_empty() {
        if !(host::is_root() && host::is_debian()) {
            check()?;
        }
        let what: Vec<&str> = missing.iter().map(|m| m.1).collect();
        eprintln!(
            "xtask setup: installing the Debian packages {} (with bookworm-backports where marked in runner::host::TOOLS)",
            what.join(" ")
        );
        host::ensure(ALL)?;
    }
    host::ensure_test_clients()?;
    rust()?;
    eprintln!("xtask setup: the host has every tool the tests and image builds need");
    Ok(())
}

/// Says what is missing and the commands that install it (an error if anything is).
pub fn check() -> Result<()> {
    let missing = host::missing(ALL);
    if missing.is_empty() {
        eprintln!("xtask setup: every Debian package the tests need is installed");
        return Ok(());
    }
    let regular: Vec<&str> = missing.iter().filter(|m| !m.2).map(|m| m.1).collect();
    let backports: Vec<&str> = missing.iter().filter(|m| m.2).map(|m| m.1).collect();
    let mut commands = vec!["as root: cargo xtask setup   (or, by hand:)".to_string()];
    commands.extend(host::install_commands(&regular, &backports));
    Err(runner::Error::Missing { missing: missing.into_iter().map(|m| m.0).collect(), commands }.into())
}

/// The Rust targets of every board, the MIPS nightly, zig, and the gates' rustfmt and clippy.
fn rust() -> Result<()> {
    toolchain::require_rustup()?;
    let mut targets: Vec<String> = Vec::new();
    for name in board::names() {
        let t = match board::load(&name)? {
            Board::Debian(b) => b.rust_target,
            // Tier 3 (MIPS): no target to add; std is built by the nightly.
            Board::OpenWrt(b) if b.arch.needs_build_std() => continue,
            Board::OpenWrt(b) => b.rust_target,
        };
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    toolchain::ensure_all(&targets)?;
    toolchain::ensure_components(&["rustfmt", "clippy"])?;
    // The fuzz layer: the pinned nightly (above) and cargo-fuzz.
    crate::fuzz::ensure_cargo_fuzz()?;
    if host::is_root() {
        // rpi3's root file system runs its maintainer scripts under qemu-user.
        host::ensure_binfmt("aarch64")?;
    }
    Ok(())
}
