//! `cargo xtask image --board NAME [...]`: router images from `board-configs/NAME.toml`.
//!
//! This part dispatches OpenWrt boards (`base = "openwrt"`) to [`openwrt::build`]; the Debian
//! boards (x86_64, rpi3) have their own builder.

pub mod elf;
pub mod ipk;
pub mod openwrt;
pub mod toml_lite;

use std::path::PathBuf;

pub const HELP: &str = "\
cargo xtask image --board NAME [OPTIONS]

Builds the router image for board-configs/NAME.toml.

Options (OpenWrt boards: glinet-mt3000, glinet-mt6000, glinet-ar150):
  --imagebuilder PATH   an OpenWrt ImageBuilder: its .tar.zst or an unpacked directory
                        (without it, the pinned one is downloaded and checked when online)
  --offline             never download; without --imagebuilder, build spind, the .ipk and
                        the overlay and say how to get the sysupgrade image
  --spind PATH          package this spind binary instead of cross-building it
  --out DIR             where outputs go (default target/images/NAME)
";

pub fn run(args: &[String]) -> Result<(), String> {
    let mut board = None;
    let mut opts = openwrt::ImageOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n\n{HELP}"))
        };
        match a.as_str() {
            "--board" => board = Some(value("--board")?),
            "--imagebuilder" => opts.imagebuilder = Some(PathBuf::from(value("--imagebuilder")?)),
            "--spind" => opts.spind_binary = Some(PathBuf::from(value("--spind")?)),
            "--out" => opts.out_dir = Some(PathBuf::from(value("--out")?)),
            "--offline" => opts.offline = true,
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("xtask image: unknown argument {other:?}\n\n{HELP}")),
        }
    }
    let board = board.ok_or_else(|| {
        format!(
            "xtask image needs --board NAME (boards: {})\n\n{HELP}",
            openwrt::board_names().join(", ")
        )
    })?;
    let board = openwrt::OpenwrtBoard::load(&board)?;
    openwrt::build(&board, &opts).map(|_| ())
}
