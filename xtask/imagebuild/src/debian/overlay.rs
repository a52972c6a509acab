//! Stage overlay: the root file system with the router's files: the rootfs tar, minus the files
//! the overlay replaces, plus the overlay (files from `image/debian/overlay`, `*.in` templates
//! filled from the board, generated files, spind, unit symlinks), all owned by root with fixed
//! mtimes.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use runner::cmd;

use super::{image_dir, Ctx};
use crate::board::{Bootloader, DebianBoard};
use crate::stage::{file_name, fixed_uuid, mkdirs, prune, Key, Stage, ASSEMBLY_VERSION};

/// Values substituted into overlay files named `*.in` (`@NAME@`).
fn template_vars(b: &DebianBoard) -> Vec<(&'static str, String)> {
    vec![
        ("BOARD", b.name.clone()),
        ("WAN", b.network.wan.clone()),
        ("LAN_PORTS", b.network.lan.join(" ")),
        ("ROOT_LABEL", b.root_part().label.clone()),
        ("BOOT_LABEL", b.boot_part().label.clone()),
    ]
}

/// Files generated from the board (on top of `image/debian/overlay`).
pub(super) fn generated_files(b: &DebianBoard) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let root = &b.root_part().label;
    let boot = &b.boot_part().label;
    let (root_spec, boot_spec, boot_dir) = if b.disk.bootloader == Bootloader::RaspiFirmware {
        (format!("LABEL={root}"), format!("LABEL={boot}"), "/boot/firmware")
    } else {
        (
            format!("PARTUUID={}", fixed_uuid(&b.name, "part-root")),
            format!("PARTUUID={}", fixed_uuid(&b.name, "part-boot")),
            "/boot/efi",
        )
    };
    v.push((
        "etc/fstab".into(),
        format!(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n\
             {root_spec} / ext4 rw,noatime,errors=remount-ro 0 1\n\
             {boot_spec} {boot_dir} vfat rw,noatime,umask=0077,nofail 0 2\n"
        ),
    ));
    if b.disk.bootloader == Bootloader::RaspiFirmware {
        // raspi-firmware regenerates cmdline.txt from this on kernel upgrades on the device.
        let consoles: Vec<&str> = b.kernel.consoles.iter().map(|c| c.as_str()).collect();
        v.push((
            "etc/default/raspi-firmware".into(),
            format!(
                "# Written by cargo xtask image (board {}).\nROOTPART=LABEL={root}\nCONSOLES=\"{}\"\nKERNEL_ARGS=\"{}\"\n",
                b.name,
                consoles.join(" "),
                b.kernel.cmdline
            ),
        ));
    }
    // First boot: systemd creates the machine id (mmdebstrap leaves an empty file).
    v.push(("etc/machine-id".into(), "uninitialized\n".into()));
    v.push((
        "etc/spin/board".into(),
        format!("BOARD={}\nWAN={}\nLAN_PORTS=\"{}\"\n", b.name, b.network.wan, b.network.lan.join(" ")),
    ));
    v
}

/// Every file of `image/debian/overlay` (relative paths, sorted).
fn overlay_sources() -> Result<Vec<PathBuf>> {
    let base = image_dir().join("overlay");
    let mut out = Vec::new();
    walk(&base, &base, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| anyhow!("cannot read {}: {e}", dir.display()))?;
    for e in rd {
        let p = e?.path();
        let md = fs::symlink_metadata(&p)?;
        if md.is_dir() {
            walk(base, &p, out)?;
        } else {
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
        }
    }
    Ok(())
}

/// Units of the overlay to enable: (unit, target) from `WantedBy=` lines.
fn units_to_enable(stage: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let dir = stage.join("etc/systemd/system");
    if let Ok(rd) = fs::read_dir(&dir) {
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        names.sort();
        for p in names {
            let text = fs::read_to_string(&p).unwrap_or_default();
            for line in text.lines() {
                if let Some(targets) = line.trim().strip_prefix("WantedBy=") {
                    for t in targets.split_whitespace() {
                        v.push((file_name(&p), t.to_string()));
                    }
                }
            }
        }
    }
    v
}

/// The root file system with the router's files: rootfs tar, minus the files the overlay
/// replaces, plus the overlay (files from `image/debian/overlay`, `*.in` templates filled from
/// the board, generated files, spind, unit symlinks), all owned by root with fixed mtimes.
pub fn build(ctx: &Ctx, rootfs: &Stage, spind: &Stage) -> Result<Stage> {
    let b = ctx.board;
    let src = image_dir().join("overlay");
    let sources = overlay_sources()?;
    let mut k = Key::new("overlay");
    k.add(ASSEMBLY_VERSION).add(&rootfs.key).add(&spind.key);
    for (n, v) in template_vars(b) {
        k.add(n).add(v);
    }
    for (p, text) in generated_files(b) {
        k.add(p).add(text);
    }
    for rel in &sources {
        let p = src.join(rel);
        let md = fs::symlink_metadata(&p)?;
        k.add(rel.to_string_lossy().as_bytes()).add(format!("{:o}", md.mode() & 0o111));
        if md.file_type().is_symlink() {
            k.add(fs::read_link(&p)?.to_string_lossy().as_bytes());
        } else {
            k.add_file(&p)?;
        }
    }
    let key = k.finish();
    let path = ctx.dir.join(format!("root-{key}.tar"));
    if path.exists() {
        eprintln!("  cached: {}", file_name(&path));
        return Ok(Stage { path, key, cached: true });
    }

    // 1. Stage the overlay in a directory.
    let stage = ctx.dir.join("overlay.tmp");
    let _ = fs::remove_dir_all(&stage);
    mkdirs(&stage)?;
    let vars = template_vars(b);
    for rel in &sources {
        let from = src.join(rel);
        let md = fs::symlink_metadata(&from)?;
        let (rel_out, templated) = match rel.to_str().and_then(|s| s.strip_suffix(".in")) {
            Some(s) => (PathBuf::from(s), true),
            None => (rel.clone(), false),
        };
        let to = stage.join(&rel_out);
        mkdirs(to.parent().unwrap())?;
        if md.file_type().is_symlink() {
            let target = fs::read_link(&from)?;
            std::os::unix::fs::symlink(target, &to)?;
            continue;
        }
        let mut data = fs::read(&from).map_err(|e| anyhow!("cannot read {}: {e}", from.display()))?;
        if templated {
            let mut text = String::from_utf8(data).map_err(|_| anyhow!("{}: template is not UTF-8", from.display()))?;
            for (n, v) in &vars {
                text = text.replace(&format!("@{n}@"), v);
            }
            if let Some(i) = text.find('@').filter(|&i| {
                text[i + 1..]
                    .split('@')
                    .next()
                    .is_some_and(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            }) {
                return Err(anyhow!(
                    "{}: unknown template variable near {:?}",
                    from.display(),
                    &text[i..(i + 20).min(text.len())]
                ));
            }
            data = text.into_bytes();
        }
        write_file(&to, &data, if md.mode() & 0o111 != 0 { 0o755 } else { 0o644 })?;
    }
    for (rel, text) in generated_files(b) {
        let to = stage.join(&rel);
        mkdirs(to.parent().unwrap())?;
        write_file(&to, text.as_bytes(), 0o644)?;
    }
    let bin = stage.join("usr/sbin/spind");
    mkdirs(bin.parent().unwrap())?;
    write_file(&bin, &fs::read(&spind.path)?, 0o755)?;
    for (unit, target) in units_to_enable(&stage) {
        let wants = stage.join("etc/systemd/system").join(format!("{target}.wants"));
        mkdirs(&wants)?;
        let link = wants.join(&unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), &link)?;
    }
    // Directories: 0755 (files keep what was set above); the state directory is private.
    set_dir_modes(&stage)?;

    // 2. Which overlay paths replace rootfs members, which are new.
    let sh = crate::paths::shell()?;
    let rootfs_tar = &rootfs.path;
    let listing = cmd!(sh, "tar -tf {rootfs_tar}").read()?;
    let in_rootfs: HashSet<&str> = listing.lines().collect();
    let mut staged = Vec::new();
    walk_all(&stage, &stage, &mut staged)?;
    staged.sort();
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    for (rel, is_dir) in &staged {
        let name = format!("./{}", rel.display());
        if *is_dir {
            if !in_rootfs.contains(format!("{name}/").as_str()) {
                adds.push(name);
            }
        } else {
            if in_rootfs.contains(format!("{name}/").as_str()) {
                return Err(anyhow!("overlay file {name} would replace a directory of the root file system"));
            }
            if in_rootfs.contains(name.as_str()) {
                deletes.push(name.clone());
            }
            adds.push(name);
        }
    }

    // 3. The overlay as a tar of its own: owned by root, fixed mtimes, parents first.
    let log = ctx.logs.join("overlay.log");
    let _ = fs::remove_file(&log);
    let list = ctx.dir.join("overlay-adds.list");
    fs::write(&list, adds.join("\n") + "\n")?;
    let overlay_tar = ctx.dir.join("overlay.tar.tmp");
    let mtime = format!("--mtime=@{}", ctx.epoch);
    cmd!(sh, "tar -cf {overlay_tar} --no-recursion --owner=0 --group=0 --numeric-owner --format=pax --pax-option=delete=atime,delete=ctime {mtime} -C {stage} --verbatim-files-from -T {list}")
        .run_logged("tar (the overlay)", &log)?;

    // 4. The rootfs tar without the members the overlay replaces, then the overlay. bsdtar
    //    copies members of an archive (`@file`) with their pax headers (file capabilities,
    //    ACLs); GNU tar --delete mangles such archives.
    let tmp = ctx.dir.join(format!("root-{key}.tar.tmp"));
    let _ = fs::remove_file(&tmp);
    let excludes: Vec<String> = deletes.iter().flat_map(|d| ["--exclude".to_string(), d.clone()]).collect();
    let from_rootfs = format!("@{}", rootfs.path.display());
    cmd!(sh, "bsdtar -cf {tmp} --format=pax {excludes...} {from_rootfs}")
        .run_logged("bsdtar (rootfs without the files the overlay replaces)", &log)?;
    let from_overlay = format!("@{}", overlay_tar.display());
    cmd!(sh, "bsdtar -rf {tmp} --format=pax {from_overlay}").run_logged("bsdtar -r (append the overlay)", &log)?;
    let _ = fs::remove_file(&overlay_tar);
    fs::rename(&tmp, &path)?;
    prune(&ctx.dir, "root-", &path);
    eprintln!("  overlay: {} files added, {} replaced", adds.len(), deletes.len());
    Ok(Stage { path, key, cached: false })
}

pub(super) fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<()> {
    fs::write(p, data).map_err(|e| anyhow!("cannot write {}: {e}", p.display()))?;
    Ok(fs::set_permissions(p, fs::Permissions::from_mode(mode))?)
}

fn set_dir_modes(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false) {
            set_dir_modes(&p)?;
        }
    }
    Ok(())
}

fn walk_all(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, bool)>) -> Result<()> {
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let is_dir = fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false);
        out.push((p.strip_prefix(base).unwrap().to_path_buf(), is_dir));
        if is_dir {
            walk_all(base, &p, out)?;
        }
    }
    Ok(())
}
