//! Where things are: the workspace, cargo's target directory, each board's stage and output
//! directories; the shell every command runs in; the timestamp inside images.

use std::path::{Path, PathBuf};

use anyhow::Result;

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
