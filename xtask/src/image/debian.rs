//! The stages of a Debian board: spind, rootfs (mmdebstrap), overlay (the router's files merged
//! into the root tar), disk (partitions written into a plain file), outputs.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::board::Board;
use super::xzblocks;
use super::{
    cmd, file_name, fixed_uuid, mkdirs, output, prune, qemu_img_progress, run_logged,
    run_logged_progress, run_logged_stdin, sha256_file, Ctx, Key, Stage,
};
use crate::util;

/// `image/debian/`: hooks and the overlay laid over the root file system.
pub fn image_dir() -> PathBuf {
    util::root().join("image").join("debian")
}

const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;

// ---- spind ------------------------------------------------------------------------------------

/// `cargo build --release -p spind --target T`; the binary is copied to the board's directory.
/// Cargo does the caching; the binary's hash is what later stages key on.
pub fn build_spind(ctx: &Ctx) -> Result<Stage, String> {
    let target = &ctx.board.rust_target;
    let native = ensure_rust_target(target)?;
    let mut c = util::cargo();
    c.args(["build", "--release", "--locked", "-p", "spind"]);
    // For the host's own target, build without --target: the same artifacts as
    // `cargo build --release` (shared with the benchmarks, no second full build).
    if !native {
        c.args(["--target", target]);
    }
    c.current_dir(util::root());
    if target.ends_with("-musl") {
        // Static musl binaries link with the linker rustup ships: no cross C toolchain needed.
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            target.to_uppercase().replace('-', "_")
        );
        if std::env::var_os(&var).is_none() {
            c.env(var, "rust-lld");
        }
    }
    if let Some((cc, _)) = super::host::cross_cc(target) {
        // C in the dependency tree (cc-rs) is compiled with the cross gcc (host tools check).
        let var = format!("CC_{}", target.replace('-', "_"));
        if std::env::var_os(&var).is_none() {
            c.env(var, cc);
        }
    }
    run_logged(
        &format!("cargo build spind ({target})"),
        c,
        &ctx.logs.join("spind.log"),
    )?;
    let built = if native {
        super::target_dir().join("release/spind")
    } else {
        super::target_dir().join(target).join("release/spind")
    };
    let dest = ctx.dir.join("spind");
    fs::copy(&built, &dest).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    let key = sha256_file(&dest)?;
    eprintln!(
        "  spind for {target}: {} (sha256 {})",
        super::human(fs::metadata(&dest).map(|m| m.len()).unwrap_or(0)),
        &key[..16]
    );
    Ok(Stage {
        path: dest,
        key,
        cached: false,
    })
}

/// Makes sure the Rust target is installed; true if it is the host's own target.
fn ensure_rust_target(target: &str) -> Result<bool, String> {
    let host = output(cmd("rustc", ["-vV"]))?;
    if host.lines().any(|l| l == format!("host: {target}")) {
        return Ok(true);
    }
    let installed = output(cmd("rustup", ["target", "list", "--installed"]))
        .map_err(|e| format!("{e}\n(the Rust target {target} is needed; install rustup, then: rustup target add {target})"))?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(false);
    }
    eprintln!("xtask image: adding Rust target {target}");
    util::run(Command::new("rustup").args(["target", "add", target]))?;
    Ok(false)
}

// ---- rootfs -----------------------------------------------------------------------------------

fn rootfs_key(ctx: &Ctx) -> Result<String, String> {
    let b = ctx.board;
    let d = b.debian();
    let mut k = Key::new("rootfs");
    k.add(&b.release)
        .add(&b.arch)
        .add(&d.mirror)
        .add(d.components.join(","))
        .add(d.packages.join(","));
    k.add(d.path_exclude.join("\n"))
        .add(d.path_include.join("\n"));
    k.add(b.kernel().initramfs_modules.join(" "))
        .add(ctx.epoch.to_string());
    for hook in ["setup.sh", "customize.sh"] {
        k.add_file(&image_dir().join("hooks").join(hook))?;
    }
    Ok(k.finish())
}

/// The root file system as a tar, made by mmdebstrap: minbase plus the board's packages, with
/// the board's dpkg path filters (no docs, man pages, locales, unneeded kernel modules) and an
/// initramfs of only the listed modules.
pub fn rootfs(ctx: &Ctx, refresh: bool) -> Result<Stage, String> {
    let b = ctx.board;
    let d = b.debian();
    let key = rootfs_key(ctx)?;
    let path = ctx.dir.join(format!("rootfs-{key}.tar"));
    if path.exists() && !refresh {
        eprintln!("  cached: {}", file_name(&path));
        return Ok(Stage {
            path,
            key,
            cached: true,
        });
    }
    let tmp = ctx.dir.join(format!("rootfs-{key}.tar.tmp"));
    let hooks = image_dir().join("hooks");
    let mut c = Command::new("mmdebstrap");
    c.args(["--variant=minbase", "--mode=root", "--format=tar"]);
    c.arg(format!("--arch={}", b.arch));
    c.arg(format!("--components={}", d.components.join(",")));
    c.arg(format!("--include={}", d.packages.join(",")));
    c.arg("--dpkgopt=force-confold");
    for g in &d.path_exclude {
        c.arg(format!("--dpkgopt=path-exclude={g}"));
    }
    for g in &d.path_include {
        c.arg(format!("--dpkgopt=path-include={g}"));
    }
    c.arg(format!("--setup-hook={}", hooks.join("setup.sh").display()));
    c.arg(format!(
        "--customize-hook={}",
        hooks.join("customize.sh").display()
    ));
    c.arg(&b.release).arg(&tmp).arg(&d.mirror);
    c.env(
        "SPIN_INITRAMFS_MODULES",
        b.kernel().initramfs_modules.join(" "),
    );
    c.env("SOURCE_DATE_EPOCH", ctx.epoch.to_string());
    let log = ctx.logs.join("rootfs.log");
    let _ = fs::remove_file(&log);
    run_logged(
        &format!(
            "mmdebstrap {} {} ({} packages)",
            b.release,
            b.arch,
            d.packages.len()
        ),
        c,
        &log,
    )?;
    fs::rename(&tmp, &path).map_err(|e| format!("cannot rename {}: {e}", tmp.display()))?;
    prune(&ctx.dir, "rootfs-", &path);
    Ok(Stage {
        path,
        key,
        cached: false,
    })
}

// ---- overlay ----------------------------------------------------------------------------------

/// Values substituted into overlay files named `*.in` (`@NAME@`).
fn template_vars(b: &Board) -> Vec<(&'static str, String)> {
    vec![
        ("BOARD", b.name.clone()),
        ("WAN", b.network.wan.clone()),
        ("LAN_PORTS", b.network.lan.join(" ")),
        ("ROOT_LABEL", b.root_part().label.clone()),
        ("BOOT_LABEL", b.boot_part().label.clone()),
    ]
}

/// Files generated from the board (on top of `image/debian/overlay`).
fn generated_files(b: &Board) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let root = &b.root_part().label;
    let boot = &b.boot_part().label;
    let (root_spec, boot_spec, boot_dir) = if b.disk().bootloader == "raspi-firmware" {
        (
            format!("LABEL={root}"),
            format!("LABEL={boot}"),
            "/boot/firmware",
        )
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
    if b.disk().bootloader == "raspi-firmware" {
        // raspi-firmware regenerates cmdline.txt from this on kernel upgrades on the device.
        let consoles: Vec<&str> = b.kernel().consoles.iter().map(|c| c.as_str()).collect();
        v.push((
            "etc/default/raspi-firmware".into(),
            format!(
                "# Written by cargo xtask image (board {}).\nROOTPART=LABEL={root}\nCONSOLES=\"{}\"\nKERNEL_ARGS=\"{}\"\n",
                b.name,
                consoles.join(" "),
                b.kernel().cmdline
            ),
        ));
    }
    // First boot: systemd creates the machine id (mmdebstrap leaves an empty file).
    v.push(("etc/machine-id".into(), "uninitialized\n".into()));
    v.push((
        "etc/spin/board".into(),
        format!(
            "BOARD={}\nWAN={}\nLAN_PORTS=\"{}\"\n",
            b.name,
            b.network.wan,
            b.network.lan.join(" ")
        ),
    ));
    v
}

/// Every file of `image/debian/overlay` (relative paths, sorted).
fn overlay_sources() -> Result<Vec<PathBuf>, String> {
    let base = image_dir().join("overlay");
    let mut out = Vec::new();
    walk(&base, &base, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let rd = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for e in rd {
        let p = e.map_err(|e| e.to_string())?.path();
        let md = fs::symlink_metadata(&p).map_err(|e| e.to_string())?;
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
        let mut names: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
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
pub fn overlay(ctx: &Ctx, rootfs: &Stage, spind: &Stage) -> Result<Stage, String> {
    let b = ctx.board;
    let src = image_dir().join("overlay");
    let sources = overlay_sources()?;
    let mut k = Key::new("overlay");
    k.add(super::ASSEMBLY_VERSION)
        .add(&rootfs.key)
        .add(&spind.key);
    for (n, v) in template_vars(b) {
        k.add(n).add(v);
    }
    for (p, text) in generated_files(b) {
        k.add(p).add(text);
    }
    for rel in &sources {
        let p = src.join(rel);
        let md = fs::symlink_metadata(&p).map_err(|e| e.to_string())?;
        k.add(rel.to_string_lossy().as_bytes())
            .add(format!("{:o}", md.mode() & 0o111));
        if md.file_type().is_symlink() {
            k.add(
                fs::read_link(&p)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .as_bytes(),
            );
        } else {
            k.add_file(&p)?;
        }
    }
    let key = k.finish();
    let path = ctx.dir.join(format!("root-{key}.tar"));
    if path.exists() {
        eprintln!("  cached: {}", file_name(&path));
        return Ok(Stage {
            path,
            key,
            cached: true,
        });
    }

    // 1. Stage the overlay in a directory.
    let stage = ctx.dir.join("overlay.tmp");
    let _ = fs::remove_dir_all(&stage);
    mkdirs(&stage)?;
    let vars = template_vars(b);
    for rel in &sources {
        let from = src.join(rel);
        let md = fs::symlink_metadata(&from).map_err(|e| e.to_string())?;
        let (rel_out, templated) = match rel.to_str().and_then(|s| s.strip_suffix(".in")) {
            Some(s) => (PathBuf::from(s), true),
            None => (rel.clone(), false),
        };
        let to = stage.join(&rel_out);
        mkdirs(to.parent().unwrap())?;
        if md.file_type().is_symlink() {
            let target = fs::read_link(&from).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(target, &to).map_err(|e| e.to_string())?;
            continue;
        }
        let mut data =
            fs::read(&from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        if templated {
            let mut text = String::from_utf8(data)
                .map_err(|_| format!("{}: template is not UTF-8", from.display()))?;
            for (n, v) in &vars {
                text = text.replace(&format!("@{n}@"), v);
            }
            if let Some(i) = text.find('@').filter(|&i| {
                text[i + 1..].split('@').next().is_some_and(|w| {
                    !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                })
            }) {
                return Err(format!(
                    "{}: unknown template variable near {:?}",
                    from.display(),
                    &text[i..(i + 20).min(text.len())]
                ));
            }
            data = text.into_bytes();
        }
        write_file(
            &to,
            &data,
            if md.mode() & 0o111 != 0 { 0o755 } else { 0o644 },
        )?;
    }
    for (rel, text) in generated_files(b) {
        let to = stage.join(&rel);
        mkdirs(to.parent().unwrap())?;
        write_file(&to, text.as_bytes(), 0o644)?;
    }
    let bin = stage.join("usr/sbin/spind");
    mkdirs(bin.parent().unwrap())?;
    write_file(
        &bin,
        &fs::read(&spind.path).map_err(|e| e.to_string())?,
        0o755,
    )?;
    for (unit, target) in units_to_enable(&stage) {
        let wants = stage
            .join("etc/systemd/system")
            .join(format!("{target}.wants"));
        mkdirs(&wants)?;
        let link = wants.join(&unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), &link)
            .map_err(|e| e.to_string())?;
    }
    // Directories: 0755 (files keep what was set above); the state directory is private.
    set_dir_modes(&stage)?;

    // 2. Which overlay paths replace rootfs members, which are new.
    let mut c = Command::new("tar");
    c.arg("-tf").arg(&rootfs.path);
    let listing = output(c)?;
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
                return Err(format!(
                    "overlay file {name} would replace a directory of the root file system"
                ));
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
    fs::write(&list, adds.join("\n") + "\n").map_err(|e| e.to_string())?;
    let overlay_tar = ctx.dir.join("overlay.tar.tmp");
    let mut c = Command::new("tar");
    c.arg("-cf").arg(&overlay_tar);
    c.args([
        "--no-recursion",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--format=pax",
        "--pax-option=delete=atime,delete=ctime",
    ]);
    c.arg(format!("--mtime=@{}", ctx.epoch));
    c.arg("-C")
        .arg(&stage)
        .arg("--verbatim-files-from")
        .arg("-T")
        .arg(&list);
    run_logged("tar (the overlay)", c, &log)?;

    // 4. The rootfs tar without the members the overlay replaces, then the overlay. bsdtar
    //    copies members of an archive (`@file`) with their pax headers (file capabilities,
    //    ACLs); GNU tar --delete mangles such archives.
    let tmp = ctx.dir.join(format!("root-{key}.tar.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut c = Command::new("bsdtar");
    c.arg("-cf").arg(&tmp).arg("--format=pax");
    for d in &deletes {
        c.arg("--exclude").arg(d);
    }
    c.arg(format!("@{}", rootfs.path.display()));
    run_logged(
        "bsdtar (rootfs without the files the overlay replaces)",
        c,
        &log,
    )?;
    let mut c = Command::new("bsdtar");
    c.arg("-rf")
        .arg(&tmp)
        .arg("--format=pax")
        .arg(format!("@{}", overlay_tar.display()));
    run_logged("bsdtar -r (append the overlay)", c, &log)?;
    let _ = fs::remove_file(&overlay_tar);
    fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    prune(&ctx.dir, "root-", &path);
    eprintln!(
        "  overlay: {} files added, {} replaced",
        adds.len(),
        deletes.len()
    );
    Ok(Stage {
        path,
        key,
        cached: false,
    })
}

fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    fs::write(p, data).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

fn set_dir_modes(dir: &Path) -> Result<(), String> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    for e in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let p = e.path();
        if fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            set_dir_modes(&p)?;
        }
    }
    Ok(())
}

fn walk_all(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, bool)>) -> Result<(), String> {
    for e in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let p = e.path();
        let is_dir = fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        out.push((p.strip_prefix(base).unwrap().to_path_buf(), is_dir));
        if is_dir {
            walk_all(base, &p, out)?;
        }
    }
    Ok(())
}

// ---- disk -------------------------------------------------------------------------------------

/// Where the partitions are (sectors of 512 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub boot_start: u64,
    pub boot_sectors: u64,
    pub root_start: u64,
    pub root_sectors: u64,
    pub total_bytes: u64,
}

pub fn layout(b: &Board) -> Layout {
    let boot_start = MIB / SECTOR;
    let boot_sectors = b.boot_part().size_mib * MIB / SECTOR;
    let root_start = boot_start + boot_sectors;
    let root_sectors = b.root_part().size_mib * MIB / SECTOR;
    // GPT keeps a backup table in the last 33 sectors: leave the last MiB free.
    let tail = if b.disk().table == "gpt" { MIB } else { 0 };
    Layout {
        boot_start,
        boot_sectors,
        root_start,
        root_sectors,
        total_bytes: (root_start + root_sectors) * SECTOR + tail,
    }
}

/// The kernel command line for the board (root, consoles, the board's extra arguments).
pub fn cmdline(b: &Board) -> String {
    let root = if b.disk().bootloader == "raspi-firmware" {
        format!("root=LABEL={}", b.root_part().label)
    } else {
        format!("root=PARTUUID={}", fixed_uuid(&b.name, "part-root"))
    };
    format!("{} {root} {}", b.console_args(), b.kernel().cmdline)
        .trim()
        .to_string()
}

/// The FAT volume id and MBR disk id: fixed per board.
fn short_id(b: &Board, purpose: &str) -> String {
    fixed_uuid(&b.name, purpose).replace('-', "")[..8].to_string()
}

pub fn sfdisk_script(b: &Board) -> String {
    let l = layout(b);
    let boot = b.boot_part();
    let root = b.root_part();
    if b.disk().table == "gpt" {
        let root_type = match b.arch.as_str() {
            "amd64" => "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            _ => "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        };
        format!(
            "label: gpt\nlabel-id: {}\nunit: sectors\nfirst-lba: 2048\nsector-size: 512\n\n\
             start={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid={}, name=\"{}\", attrs=\"LegacyBIOSBootable\"\n\
             start={}, size={}, type={root_type}, uuid={}, name=\"{}\"\n",
            fixed_uuid(&b.name, "disk").to_uppercase(),
            l.boot_start,
            l.boot_sectors,
            fixed_uuid(&b.name, "part-boot").to_uppercase(),
            boot.label,
            l.root_start,
            l.root_sectors,
            fixed_uuid(&b.name, "part-root").to_uppercase(),
            root.label,
        )
    } else {
        format!(
            "label: dos\nlabel-id: 0x{}\nunit: sectors\nsector-size: 512\n\n\
             start={}, size={}, type=c, bootable\nstart={}, size={}, type=83\n",
            short_id(b, "disk"),
            l.boot_start,
            l.boot_sectors,
            l.root_start,
            l.root_sectors,
        )
    }
}

fn disk_key(ctx: &Ctx, root: &Stage) -> String {
    let b = ctx.board;
    let mut k = Key::new("disk");
    k.add(super::ASSEMBLY_VERSION)
        .add(&root.key)
        .add(sfdisk_script(b))
        .add(cmdline(b))
        .add(&b.disk().bootloader)
        .add(ctx.epoch.to_string());
    for p in &b.disk().partitions {
        k.add(&p.label).add(&p.fs).add(p.size_mib.to_string());
    }
    k.finish()
}

/// Assembles the raw disk image `disk-KEY.img` in `dir` from the root tar (no mounts, no loop
/// devices). Deterministic: the same root tar and board give the same bytes.
pub fn disk(ctx: &Ctx, root: &Stage, dir: &Path) -> Result<Stage, String> {
    let b = ctx.board;
    let key = disk_key(ctx, root);
    let path = dir.join(format!("disk-{key}.img"));
    if path.exists() && path.with_extension("boot").is_dir() {
        eprintln!("  cached: {}", file_name(&path));
        return Ok(Stage {
            path,
            key,
            cached: true,
        });
    }
    let l = layout(b);
    let tmp = dir.join(format!("disk-{key}.img.tmp"));
    let work = dir.join(format!("disk-{key}.work"));
    let _ = fs::remove_dir_all(&work);
    mkdirs(&work)?;
    let log = ctx.logs.join("disk.log");
    let _ = fs::remove_file(&log);
    let epoch = ctx.epoch.to_string();

    // Partition table.
    File::create(&tmp)
        .and_then(|f| f.set_len(l.total_bytes))
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let script = work.join("sfdisk.script");
    fs::write(&script, sfdisk_script(b)).map_err(|e| e.to_string())?;
    let mut c = Command::new("sfdisk");
    c.args(["--no-reread", "--no-tell-kernel", "--wipe", "always", "-q"])
        .arg(&tmp);
    run_logged_stdin(
        "sfdisk",
        c,
        &log,
        Some(File::open(&script).map_err(|e| e.to_string())?),
    )?;

    // Boot partition (FAT32): files from the root tar.
    let files = work.join("boot-files");
    mkdirs(&files)?;
    let fat = work.join("fat");
    mkdirs(&fat)?;
    boot_files(ctx, root, &files, &fat)?;
    let boot = b.boot_part();
    let mut c = Command::new("mkfs.fat");
    c.args([
        "-F",
        "32",
        "-S",
        "512",
        "-s",
        "1",
        "--invariant",
        "-n",
        &boot.label,
        "-i",
        &short_id(b, "fat-volid"),
    ]);
    c.arg(format!("--offset={}", l.boot_start))
        .args(["-h", &l.boot_start.to_string()]);
    c.arg(&tmp)
        .arg((l.boot_sectors * SECTOR / 1024).to_string());
    c.env("SOURCE_DATE_EPOCH", &epoch);
    run_logged("mkfs.fat", c, &log)?;
    let image_at = format!("{}@@{}", tmp.display(), l.boot_start * SECTOR);
    set_mtimes(&fat, ctx.epoch)?;
    let mut entries: Vec<PathBuf> = fs::read_dir(&fat)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut c = Command::new("mcopy");
    c.args(["-s", "-m", "-o", "-i"])
        .arg(&image_at)
        .args(&entries)
        .arg("::/");
    c.env("MTOOLS_SKIP_CHECK", "1")
        .env("SOURCE_DATE_EPOCH", &epoch);
    run_logged("mcopy (boot partition)", c, &log)?;
    if b.disk().bootloader == "syslinux+systemd-boot" {
        // BIOS: syslinux's installer (from the image's own syslinux package) writes ldlinux.sys
        // into the FAT through mtools; gptmbr.bin finds the LegacyBIOSBootable partition.
        let mut c = Command::new(files.join("usr/bin/syslinux"));
        c.args(["--install", "--directory", "/syslinux", "--offset"])
            .arg((l.boot_start * SECTOR).to_string())
            .arg(&tmp);
        c.env("MTOOLS_SKIP_CHECK", "1")
            .env("SOURCE_DATE_EPOCH", &epoch);
        run_logged("syslinux --install", c, &log)?;
        let mbr = fs::read(files.join("usr/lib/syslinux/mbr/gptmbr.bin"))
            .map_err(|e| format!("gptmbr.bin: {e}"))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&tmp)
            .map_err(|e| e.to_string())?;
        f.write_all(&mbr[..440.min(mbr.len())])
            .map_err(|e| e.to_string())?;
    }

    // Root partition (ext4), populated straight from the tar.
    let root_part = b.root_part();
    let uuid = fixed_uuid(&b.name, "fs-root");
    let mut c = Command::new("mkfs.ext4");
    c.args([
        "-q",
        "-F",
        "-t",
        "ext4",
        "-b",
        "4096",
        "-I",
        "256",
        "-m",
        "1",
        "-L",
        &root_part.label,
        "-U",
        &uuid,
    ]);
    c.arg("-E").arg(format!(
        "offset={},hash_seed={},lazy_itable_init=0,root_owner=0:0",
        l.root_start * SECTOR,
        fixed_uuid(&b.name, "fs-root-hash")
    ));
    c.arg("-d")
        .arg(&root.path)
        .arg(&tmp)
        .arg(format!("{}k", l.root_sectors * SECTOR / 1024));
    c.env("E2FSPROGS_FAKE_TIME", &epoch)
        .env("SOURCE_DATE_EPOCH", &epoch);
    run_logged("mkfs.ext4 -d (root file system)", c, &log)?;

    // Keep the boot files next to the image (kernel, initrd, dtb: direct boots in QEMU tests).
    let staged = dir.join("boot.tmp");
    let _ = fs::remove_dir_all(&staged);
    fs::rename(&fat, &staged).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&work);
    fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    prune(dir, "disk-", &path);
    fs::rename(&staged, path.with_extension("boot")).map_err(|e| e.to_string())?;
    Ok(Stage {
        path,
        key,
        cached: false,
    })
}

/// Extracts what the boot partition needs from the root tar into `files`, and lays out the
/// boot partition's tree in `fat`.
fn boot_files(ctx: &Ctx, root: &Stage, files: &Path, fat: &Path) -> Result<(), String> {
    let b = ctx.board;
    let log = ctx.logs.join("disk.log");
    let mut c = Command::new("tar");
    c.arg("-xf")
        .arg(&root.path)
        .arg("-C")
        .arg(files)
        .args(["--wildcards", "--no-same-owner"]);
    match b.disk().bootloader.as_str() {
        "syslinux+systemd-boot" => {
            c.args([
                "./boot/vmlinuz-*",
                "./boot/initrd.img-*",
                "./usr/lib/systemd/boot/efi/systemd-bootx64.efi",
                "./usr/lib/syslinux/mbr/gptmbr.bin",
                "./usr/bin/syslinux",
            ]);
        }
        _ => {
            c.arg("./boot/firmware/*");
        }
    }
    run_logged("tar -x (boot files from the root file system)", c, &log)?;
    let cmdline = cmdline(b);
    match b.disk().bootloader.as_str() {
        "syslinux+systemd-boot" => {
            let kernel = newest(&files.join("boot"), "vmlinuz-")?;
            let initrd = newest(&files.join("boot"), "initrd.img-")?;
            let put = |rel: &str, data: &[u8]| -> Result<(), String> {
                let p = fat.join(rel);
                mkdirs(p.parent().unwrap())?;
                write_file(&p, data, 0o644)
            };
            let read =
                |p: &Path| fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
            put("vmlinuz", &read(&kernel)?)?;
            put("initrd.img", &read(&initrd)?)?;
            put(
                "EFI/BOOT/BOOTX64.EFI",
                &read(&files.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi"))?,
            )?;
            put(
                "loader/loader.conf",
                b"default spin.conf\ntimeout 0\nconsole-mode keep\neditor no\n",
            )?;
            put(
                "loader/entries/spin.conf",
                format!("title SPIN router ({})\nlinux /vmlinuz\ninitrd /initrd.img\noptions {cmdline}\n", b.name).as_bytes(),
            )?;
            put(
                "syslinux/syslinux.cfg",
                format!(
                    "SERIAL 0 115200\nDEFAULT spin\nPROMPT 0\nTIMEOUT 0\n\nLABEL spin\n  MENU LABEL SPIN router ({})\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND {cmdline}\n",
                    b.name
                )
                .as_bytes(),
            )?;
        }
        _ => {
            // raspi-firmware filled /boot/firmware in the rootfs stage; the command line is ours.
            copy_tree(&files.join("boot/firmware"), fat)?;
            write_file(
                &fat.join("cmdline.txt"),
                format!("{cmdline}\n").as_bytes(),
                0o644,
            )?;
        }
    }
    Ok(())
}

fn newest(dir: &Path, prefix: &str) -> Result<PathBuf, String> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| file_name(p).starts_with(prefix))
        .collect();
    v.sort();
    v.pop()
        .ok_or_else(|| format!("no {prefix}* in the root file system's /boot"))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    mkdirs(to)?;
    let mut entries: Vec<PathBuf> = fs::read_dir(from)
        .map_err(|e| format!("cannot read {}: {e}", from.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let dest = to.join(file_name(&p));
        if p.is_dir() {
            copy_tree(&p, &dest)?;
        } else {
            fs::copy(&p, &dest).map_err(|e| format!("cannot copy {}: {e}", p.display()))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Sets every mtime under `dir` (and `dir` itself) to `epoch` (mcopy -m keeps them).
fn set_mtimes(dir: &Path, epoch: u64) -> Result<(), String> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    for e in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let p = e.path();
        if p.is_dir() {
            set_mtimes(&p, epoch)?;
        }
        let f = File::open(&p).map_err(|e| e.to_string())?;
        f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
            .map_err(|e| e.to_string())?;
    }
    let f = File::open(dir).map_err(|e| e.to_string())?;
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .map_err(|e| e.to_string())
}

// ---- outputs ----------------------------------------------------------------------------------

/// The board's outputs in `out/`: raw image (hard link), `.img.xz` + `.sha256`, `.qcow2`, `.ova`,
/// and the boot files for direct kernel boots (QEMU tests): kernel, initrd, (dtb), cmdline.
pub fn outputs(ctx: &Ctx, disk: &Stage) -> Result<Vec<PathBuf>, String> {
    let b = ctx.board;
    let out = &ctx.out;
    let base = format!("spin-{}", b.name);
    let stamp = out.join(".key");
    let want_key = format!("{}:{}", disk.key, b.outputs.join(","));
    let mut artifacts = Vec::new();
    let raw = out.join(format!("{base}.img"));
    artifacts.push(raw.clone());
    for o in &b.outputs {
        match o.as_str() {
            "img.xz" => {
                artifacts.push(out.join(format!("{base}.img.xz")));
                artifacts.push(out.join(format!("{base}.img.xz.sha256")));
            }
            "qcow2" => artifacts.push(out.join(format!("{base}.qcow2"))),
            "ova" => artifacts.push(out.join(format!("{base}.ova"))),
            _ => {}
        }
    }
    let boot_dir = disk.path.with_extension("boot");
    let boot_files = boot_artifacts(b, &boot_dir, out)?;
    artifacts.extend(boot_files.iter().map(|(_, to)| to.clone()));
    artifacts.push(out.join(format!("{base}.boot.txt")));
    if fs::read_to_string(&stamp).ok().as_deref() == Some(want_key.as_str())
        && artifacts.iter().all(|a| a.exists())
    {
        eprintln!("  cached: outputs for disk {}", disk.key);
        return Ok(artifacts);
    }
    let _ = fs::remove_file(&stamp);

    let _ = fs::remove_file(&raw);
    fs::hard_link(&disk.path, &raw)
        .or_else(|_| fs::copy(&disk.path, &raw).map(|_| ()))
        .map_err(|e| e.to_string())?;
    for (from, to) in &boot_files {
        let _ = fs::remove_file(to);
        fs::copy(from, to).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    }
    fs::write(
        out.join(format!("{base}.boot.txt")),
        boot_txt(b, &boot_files),
    )
    .map_err(|e| e.to_string())?;

    // The outputs only read the disk: made side by side (xz compresses one block per core,
    // qemu-img mostly uses one), each with its own log.
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let jobs: Vec<_> = b
            .outputs
            .iter()
            .map(|kind| s.spawn(move || make_output(ctx, disk, kind)))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    fs::write(&stamp, &want_key).map_err(|e| e.to_string())?;
    Ok(artifacts)
}

/// Makes one output (`img.xz`, `qcow2`, `ova`) from the disk, atomically.
fn make_output(ctx: &Ctx, disk: &Stage, kind: &str) -> Result<(), String> {
    let base = format!("spin-{}", ctx.board.name);
    let out = &ctx.out;
    let log = ctx.logs.join(format!("output-{kind}.log"));
    let _ = fs::remove_file(&log);
    match kind {
        "img.xz" => {
            let xz = out.join(format!("{base}.img.xz"));
            let p = super::Progress::start("xz (img.xz)");
            let stats = xzblocks::compress(
                &disk.path,
                &xz,
                &xzblocks::cache_dir(&ctx.dir),
                &XZ_SETTINGS,
                &|done, total| p.fraction.set(done as u64, total as u64),
            );
            p.stop();
            let stats = stats?;
            eprintln!(
                "  {base}.img.xz: {} of {} blocks compressed, the others cached",
                stats.compressed, stats.blocks
            );
            write_atomic(
                &out.join(format!("{base}.img.xz.sha256")),
                format!("{}  {base}.img.xz\n", stats.sha256).as_bytes(),
            )
        }
        "qcow2" => {
            let q = out.join(format!("{base}.qcow2"));
            let tmp = q.with_extension("qcow2.tmp");
            let _ = fs::remove_file(&tmp);
            let mut c = Command::new("qemu-img");
            c.args(["convert", "-p", "-f", "raw", "-O", "qcow2", "-c"])
                .arg(&disk.path)
                .arg(&tmp);
            run_logged_progress("qcow2 (qemu-img)", c, &log, qemu_img_progress)?;
            fs::rename(&tmp, &q).map_err(|e| e.to_string())
        }
        "ova" => super::ova::build(ctx, &disk.path, &out.join(format!("{base}.ova")), &log),
        other => Err(format!("unknown output {other:?}")),
    }
}

/// `xz -1` in 64 MiB blocks: fast, and the images stay well under their size targets (README).
const XZ_SETTINGS: xzblocks::XzSettings = xzblocks::XzSettings {
    preset: "-1",
    block_size: 64 << 20,
};

fn write_atomic(p: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = p.with_extension("tmp");
    fs::write(&tmp, data)
        .and_then(|_| fs::rename(&tmp, p))
        .map_err(|e| format!("cannot write {}: {e}", p.display()))
}

/// (file in the boot tree, name in out/) for the kernel, initrd and (Raspberry Pi) device tree.
fn boot_artifacts(
    b: &Board,
    boot_dir: &Path,
    out: &Path,
) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let base = format!("spin-{}", b.name);
    let mut v = Vec::new();
    if b.disk().bootloader == "raspi-firmware" {
        v.push((
            newest(boot_dir, "vmlinuz-")?,
            out.join(format!("{base}.vmlinuz")),
        ));
        v.push((
            newest(boot_dir, "initrd.img-")?,
            out.join(format!("{base}.initrd.img")),
        ));
        v.push((
            boot_dir.join("bcm2837-rpi-3-b.dtb"),
            out.join("bcm2837-rpi-3-b.dtb"),
        ));
    } else {
        v.push((
            boot_dir.join("vmlinuz"),
            out.join(format!("{base}.vmlinuz")),
        ));
        v.push((
            boot_dir.join("initrd.img"),
            out.join(format!("{base}.initrd.img")),
        ));
    }
    Ok(v)
}

fn boot_txt(b: &Board, files: &[(PathBuf, PathBuf)]) -> String {
    let mut s = format!(
        "# How to boot spin-{0} directly (QEMU -kernel/-initrd/-append); key=value.\nBOARD={0}\nCMDLINE={1}\nROOT_LABEL={2}\nWAN={3}\nLAN_PORTS={4}\nREADY_MARKER=SPIN-ROUTER-READY\n",
        b.name,
        cmdline(b),
        b.root_part().label,
        b.network.wan,
        b.network.lan.join(" ")
    );
    for (_, to) in files {
        let n = file_name(to);
        let k = if n.ends_with(".vmlinuz") {
            "KERNEL"
        } else if n.ends_with(".initrd.img") {
            "INITRD"
        } else {
            "DTB"
        };
        s.push_str(&format!("{k}={n}\n"));
    }
    s
}

/// Writes `data` into `file` at `offset` (used by tests to corrupt images on purpose).
#[allow(dead_code)]
pub fn write_at(file: &Path, offset: u64, data: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    f.write_all(data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_aligned_and_fit() {
        for name in ["x86_64", "rpi3"] {
            let b = super::super::board::load(name).unwrap();
            let l = layout(&b);
            assert_eq!(l.boot_start % 2048, 0);
            assert_eq!(l.root_start % 2048, 0);
            assert!(l.root_start >= l.boot_start + l.boot_sectors);
            assert!(l.total_bytes >= (l.root_start + l.root_sectors) * SECTOR);
        }
    }

    #[test]
    fn cmdlines_have_root_and_consoles_last_console_last() {
        let x = super::super::board::load("x86_64").unwrap();
        let c = cmdline(&x);
        assert!(
            c.starts_with("console=tty0 console=ttyS0,115200 root=PARTUUID="),
            "{c}"
        );
        assert!(c.contains("net.ifnames=0"));
        let r = super::super::board::load("rpi3").unwrap();
        assert!(cmdline(&r).contains("root=LABEL=RASPIROOT"));
        assert!(sfdisk_script(&r).contains("label: dos"));
        assert!(sfdisk_script(&x).contains("attrs=\"LegacyBIOSBootable\""));
    }
}
