//! `cargo xtask image --board NAME`: parses the flags and drives the board's builder
//! (`imagebuild::Builder`): refresh, build, report, check.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use imagebuild::board;

const HELP: &str = "\
cargo xtask image --board NAME [--check] [--refresh-rootfs]
cargo xtask image --list

  --board NAME       build board-configs/NAME.toml (outputs in target/image/NAME/out/)
  --check            afterwards, inspect what was built as the tests do (Debian: partitions,
                     files, outputs, and the disk assembled again to compare; OpenWrt: the
                     .ipk read back, the overlay, the sysupgrade image when one was built)
  --refresh-rootfs   make the root file system anew even if a cached one matches, to pick up
                     new package versions (Debian: mmdebstrap from the mirror; OpenWrt: the
                     ImageBuilder's make image again, which needs an ImageBuilder)
  --list             list the boards

OpenWrt boards (glinet-mt3000, glinet-mt6000, glinet-ar150):
  --imagebuilder PATH   an OpenWrt ImageBuilder: its .tar.zst or an unpacked directory
                        (without it, the pinned one is downloaded and checked when online)
  --offline             never download; without --imagebuilder, build spind, the .ipk and
                        the overlay and say how to get the sysupgrade image
  --spind PATH          package this spind binary instead of cross-building it
  --out DIR             where outputs go (default target/image/NAME/out)
";

pub fn run(args: &[String]) -> Result<()> {
    let mut name = None;
    let mut check = false;
    let mut refresh = false;
    let mut opts = imagebuild::Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or_else(|| anyhow!("{flag} needs a value\n\n{HELP}"));
        match a.as_str() {
            "--board" => name = Some(value("--board")?),
            s if s.starts_with("--board=") => name = Some(s["--board=".len()..].to_string()),
            "--imagebuilder" => opts.imagebuilder = Some(PathBuf::from(value("--imagebuilder")?)),
            "--spind" => opts.spind_binary = Some(PathBuf::from(value("--spind")?)),
            "--out" => opts.out_dir = Some(PathBuf::from(value("--out")?)),
            "--offline" => opts.offline = true,
            "--check" => check = true,
            "--refresh-rootfs" => refresh = true,
            "--list" => {
                for name in board::names() {
                    match board::load(&name) {
                        Ok(b) => println!("{name:<16} {:<8} {:<28} {}", b.base(), b.rust_target(), b.description()),
                        Err(e) => println!("{name:<16} INVALID: {e:#}"),
                    }
                }
                return Ok(());
            }
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(());
            }
            other => bail!("xtask image: unknown argument {other:?}\n\n{HELP}"),
        }
    }
    let name =
        name.ok_or_else(|| anyhow!("xtask image: which board? (--board NAME; boards: {})", board::names().join(", ")))?;
    build(&name, opts, refresh, check).map(|_| ())
}

/// Builds a board (and with `check` inspects it); prints the report.
pub fn build(name: &str, opts: imagebuild::Options, refresh: bool, check: bool) -> Result<imagebuild::Built> {
    let mut builder = imagebuild::builder(board::load(name)?, opts)?;
    if refresh {
        builder.refresh_rootfs()?;
    }
    let built = builder.build()?;
    builder.report(&built);
    if check {
        builder.check(&built)?;
    }
    Ok(built)
}
