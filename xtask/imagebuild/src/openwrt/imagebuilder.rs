//! The ImageBuilder: found (given with `--imagebuilder`, cached, or downloaded and checked
//! against the pinned sha256), unpacked once, checked to be for the board's target, and run
//! (`make image PROFILE=... PACKAGES="... /abs/spind.ipk" FILES=... BIN_DIR=...`), skipped
//! when its inputs did not change.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use runner::host::{ensure, sha256_file, Need};
use runner::{cmd, Shell};

use crate::board::OpenWrtBoard;
use crate::build::{Artifact, Options};
use crate::stage::reset_dir;

/// An unpacked ImageBuilder directory, or `Err(why)` when there is none (not an error: the
/// build then ends with [`missing_message`]). Outer `Err` for a bad one.
pub fn resolve_imagebuilder(board: &OpenWrtBoard, opts: &Options) -> Result<Result<PathBuf, String>> {
    let given = match &opts.imagebuilder {
        Some(p) => Some(p.clone()),
        None => {
            let cached = crate::paths::root().join("target/openwrt/dl").join(board.imagebuilder_file());
            if cached.is_file() {
                Some(cached)
            } else if opts.offline {
                return Ok(Err("--offline, and none given with --imagebuilder".into()));
            } else {
                match download_imagebuilder(board)? {
                    Ok(p) => Some(p),
                    Err(why) => return Ok(Err(why)),
                }
            }
        }
    };
    let path = given.expect("set above");
    if path.is_dir() {
        check_imagebuilder_dir(board, &path)?;
        return Ok(Ok(path));
    }
    if !path.is_file() {
        return Err(anyhow!("--imagebuilder {}: no such file or directory", path.display()));
    }
    // A tarball: check it against the pin when it is the pinned file, then unpack once.
    let sha = sha256_file(&path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == board.imagebuilder_file() {
        match &board.openwrt.imagebuilder_sha256 {
            Some(pin) if *pin == sha => eprintln!("xtask: {name}: sha256 matches {}", board.file_name()),
            Some(pin) => {
                return Err(anyhow!(
                    "{}: sha256 {sha} does not match the pinned {pin} ({}): a damaged or different file",
                    path.display(),
                    board.file_name()
                ))
            }
            None => eprintln!(
                "xtask: warning: {} pins no sha256; using {} as given (sha256 {sha})",
                board.file_name(),
                path.display()
            ),
        }
    } else {
        eprintln!(
            "xtask: note: {} is not the pinned {}; using it as given (sha256 {sha})",
            path.display(),
            board.imagebuilder_file()
        );
    }
    let dir = crate::paths::root().join("target/openwrt/ib").join(&sha[..16]);
    let stamp = dir.join(".xtask-unpacked");
    if !stamp.exists() {
        ensure(&[Need::ImageBuilder])?;
        reset_dir(&dir)?;
        eprintln!("xtask: unpacking {} into {}", path.display(), dir.display());
        let sh = crate::paths::shell()?;
        cmd!(sh, "tar -xf {path} -C {dir} --strip-components=1").run()?;
        std::fs::write(&stamp, format!("{sha}\n"))?;
    }
    check_imagebuilder_dir(board, &dir)?;
    Ok(Ok(dir))
}

/// A real ImageBuilder has `.config` naming its target: it must be the board's.
fn check_imagebuilder_dir(board: &OpenWrtBoard, dir: &Path) -> Result<()> {
    if !dir.join("Makefile").is_file() {
        return Err(anyhow!("{}: not an OpenWrt ImageBuilder (no Makefile)", dir.display()));
    }
    if let Ok(config) = std::fs::read_to_string(dir.join(".config")) {
        let want = format!("CONFIG_TARGET_{}_{}=y", board.openwrt.target, board.openwrt.subtarget);
        if !config.lines().any(|l| l.trim() == want) {
            return Err(anyhow!(
                "{}: this ImageBuilder is not for {}/{} (no {want} in .config); {} needs {}",
                dir.display(),
                board.openwrt.target,
                board.openwrt.subtarget,
                board.name,
                board.imagebuilder_file()
            ));
        }
    }
    Ok(())
}

/// Downloads the pinned ImageBuilder to `target/openwrt/dl/` and checks its sha256. `Err(why)`
/// when offline; outer `Err` when the download is refused or damaged.
fn download_imagebuilder(board: &OpenWrtBoard) -> Result<Result<PathBuf, String>> {
    let Some(pin) = &board.openwrt.imagebuilder_sha256 else {
        return Ok(Err(format!(
            "{} pins no verified sha256, so xtask does not download {}",
            board.file_name(),
            board.imagebuilder_file()
        )));
    };
    ensure(&[Need::ImageBuilder])?;
    let dl = crate::paths::root().join("target/openwrt/dl");
    std::fs::create_dir_all(&dl)?;
    let part = dl.join(format!("{}.part", board.imagebuilder_file()));
    eprintln!("xtask: downloading {}", board.openwrt.imagebuilder_url);
    let (sh, url) = (crate::paths::shell()?, &board.openwrt.imagebuilder_url);
    if let Err(e) = cmd!(sh, "curl -fL --connect-timeout 15 --retry 2 --progress-bar -o {part} {url}").run() {
        std::fs::remove_file(&part).ok();
        return Ok(Err(format!("downloading it from downloads.openwrt.org failed: {e}")));
    }
    let sha = sha256_file(&part)?;
    if sha != *pin {
        std::fs::remove_file(&part).ok();
        return Err(anyhow!(
            "downloaded {} has sha256 {sha}, but {} pins {pin}: refusing to use it",
            board.openwrt.imagebuilder_url,
            board.file_name()
        ));
    }
    let done = dl.join(board.imagebuilder_file());
    std::fs::rename(&part, &done)?;
    Ok(Ok(done))
}

/// The `make image` command line for this board.
pub fn imagebuilder_command<'a>(
    sh: &'a Shell,
    board: &OpenWrtBoard,
    ib: &Path,
    ipk: &Path,
    files: &Path,
    bin_dir: &Path,
) -> runner::Cmd<'a> {
    let mut packages: Vec<String> = board.openwrt.packages.clone();
    packages.push(ipk.display().to_string());
    let profile = format!("PROFILE={}", board.openwrt.profile);
    let packages = format!("PACKAGES={}", packages.join(" "));
    let files = format!("FILES={}", files.display());
    let bin_dir = format!("BIN_DIR={}", bin_dir.display());
    cmd!(sh, "make -C {ib} image {profile} {packages} {files} {bin_dir} EXTRA_IMAGE_NAME=valibox")
        // Not cargo's jobserver or flags: the ImageBuilder runs its own make.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("CARGO_MAKEFLAGS")
}

/// Runs `make image` (unless its inputs are unchanged and not `refresh`) and returns the images
/// for the profile.
pub fn run_imagebuilder(
    board: &OpenWrtBoard,
    ib: &Path,
    ipk: &Path,
    files: &Path,
    bin_dir: &Path,
    refresh: bool,
) -> Result<Vec<Artifact>> {
    ensure(&[Need::ImageBuilder])?;
    let mut key = format!(
        "{}\n{}\n{}\n{}\n",
        ib.display(),
        board.openwrt.profile,
        board.openwrt.packages.join(" "),
        sha256_file(ipk)?
    );
    key.push_str(&tree_listing(files)?);
    let stamp = bin_dir.join(".xtask-inputs");
    let fresh = std::fs::read_to_string(&stamp).map(|s| s == key).unwrap_or(false);
    if fresh && !refresh && !find_images(board, bin_dir).is_empty() {
        eprintln!("xtask: {}: image inputs unchanged, keeping {}", board.name, bin_dir.display());
    } else {
        reset_dir(bin_dir)?;
        let sh = crate::paths::shell()?;
        imagebuilder_command(&sh, board, ib, ipk, files, bin_dir).run()?;
        std::fs::write(&stamp, key)?;
    }
    let images = find_images(board, bin_dir);
    if !images.iter().any(|a| a.what.contains("sysupgrade")) {
        return Err(anyhow!(
            "make image finished but {} holds no sysupgrade image for {}",
            bin_dir.display(),
            board.openwrt.profile
        ));
    }
    Ok(images)
}

fn find_images(board: &OpenWrtBoard, bin_dir: &Path) -> Vec<Artifact> {
    let mut found: Vec<Artifact> = std::fs::read_dir(bin_dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.contains(&board.openwrt.profile) || !e.path().is_file() {
                        return None;
                    }
                    let what = if name.contains("sysupgrade") {
                        "sysupgrade image (flash from GL.iNet's upgrade page, LuCI or sysupgrade)"
                    } else if name.contains("factory") {
                        "factory image"
                    } else if name.ends_with(".manifest") {
                        "package manifest"
                    } else {
                        "ImageBuilder output"
                    };
                    Some(Artifact { path: e.path(), what: what.into() })
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// `sha256  ./path` for every file under `dir`, sorted by path: what the overlay holds.
fn tree_listing(dir: &Path) -> Result<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(d).map_err(|e| anyhow!("cannot read {}: {e}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                walk(base, &p, out)?;
            } else if p.is_file() {
                out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut s = String::new();
    for f in files {
        s.push_str(&format!("{}  ./{}\n", sha256_file(&dir.join(&f))?, f.display()));
    }
    Ok(s)
}
