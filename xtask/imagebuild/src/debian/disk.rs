//! Stage disk: the raw disk image assembled from the root tar without mounts or loop devices:
//! the partition table (sfdisk), the boot partition (mkfs.fat --offset, mtools, syslinux), the
//! root file system (mkfs.ext4 -E offset= -d TAR). Deterministic: the same root tar and board
//! give the same bytes.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use runner::{cmd, Stdin};

use super::Ctx;
use crate::board::{Bootloader, DebianArch, DebianBoard, Table};
use crate::stage::{file_name, fixed_uuid, mkdirs, prune, Key, Stage, ASSEMBLY_VERSION};

const MIB: u64 = 1 << 20;
pub(super) const SECTOR: u64 = 512;

/// Where the partitions are (sectors of 512 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub boot_start: u64,
    pub boot_sectors: u64,
    pub root_start: u64,
    pub root_sectors: u64,
    pub total_bytes: u64,
}

pub fn layout(b: &DebianBoard) -> Layout {
    let boot_start = MIB / SECTOR;
    let boot_sectors = b.boot_part().size_mib * MIB / SECTOR;
    let root_start = boot_start + boot_sectors;
    let root_sectors = b.root_part().size_mib * MIB / SECTOR;
    // GPT keeps a backup table in the last 33 sectors: leave the last MiB free.
    let tail = if b.disk.table == Table::Gpt { MIB } else { 0 };
    Layout {
        boot_start,
        boot_sectors,
        root_start,
        root_sectors,
        total_bytes: (root_start + root_sectors) * SECTOR + tail,
    }
}

/// The kernel command line for the board (root, consoles, the board's extra arguments).
pub fn cmdline(b: &DebianBoard) -> String {
    let root = if b.disk.bootloader == Bootloader::RaspiFirmware {
        format!("root=LABEL={}", b.root_part().label)
    } else {
        format!("root=PARTUUID={}", fixed_uuid(&b.name, "part-root"))
    };
    format!("{} {root} {}", b.console_args(), b.kernel.cmdline).trim().to_string()
}

/// The FAT volume id and MBR disk id: fixed per board.
fn short_id(b: &DebianBoard, purpose: &str) -> String {
    fixed_uuid(&b.name, purpose).replace('-', "")[..8].to_string()
}

pub fn sfdisk_script(b: &DebianBoard) -> String {
    let l = layout(b);
    let boot = b.boot_part();
    let root = b.root_part();
    if b.disk.table == Table::Gpt {
        let root_type = match b.arch {
            DebianArch::Amd64 => "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            DebianArch::Arm64 => "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
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
    k.add(ASSEMBLY_VERSION)
        .add(&root.key)
        .add(sfdisk_script(b))
        .add(cmdline(b))
        .add(b.disk.bootloader.as_str())
        .add(ctx.epoch.to_string());
    for p in &b.disk.partitions {
        k.add(&p.label).add(p.fs.as_str()).add(p.size_mib.to_string());
    }
    k.finish()
}

/// Assembles the raw disk image `disk-KEY.img` in `dir` from the root tar (no mounts, no loop
/// devices). Deterministic: the same root tar and board give the same bytes.
pub fn build(ctx: &Ctx, root: &Stage, dir: &Path) -> Result<Stage> {
    let b = ctx.board;
    let key = disk_key(ctx, root);
    let path = dir.join(format!("disk-{key}.img"));
    if path.exists() && path.with_extension("boot").is_dir() {
        eprintln!("  cached: {}", file_name(&path));
        return Ok(Stage { path, key, cached: true });
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
        .map_err(|e| anyhow!("cannot create {}: {e}", tmp.display()))?;
    let script = work.join("sfdisk.script");
    fs::write(&script, sfdisk_script(b))?;
    let sh = crate::paths::shell()?;
    cmd!(sh, "sfdisk --no-reread --no-tell-kernel --wipe always -q {tmp}")
        .stdin(Stdin::File(script))
        .run_logged("sfdisk", &log)?;

    // Boot partition (FAT32): files from the root tar.
    let files = work.join("boot-files");
    mkdirs(&files)?;
    let fat = work.join("fat");
    mkdirs(&fat)?;
    boot_files(ctx, root, &files, &fat)?;
    let boot = b.boot_part();
    let (label, volid) = (&boot.label, short_id(b, "fat-volid"));
    let (offset, kib) = (l.boot_start.to_string(), (l.boot_sectors * SECTOR / 1024).to_string());
    cmd!(sh, "mkfs.fat -F 32 -S 512 -s 1 --invariant -n {label} -i {volid} --offset={offset} -h {offset} {tmp} {kib}")
        .env("SOURCE_DATE_EPOCH", &epoch)
        .run_logged("mkfs.fat", &log)?;
    let image_at = format!("{}@@{}", tmp.display(), l.boot_start * SECTOR);
    set_mtimes(&fat, ctx.epoch)?;
    let mut entries: Vec<PathBuf> = fs::read_dir(&fat)?.flatten().map(|e| e.path()).collect();
    entries.sort();
    cmd!(sh, "mcopy -s -m -o -i {image_at} {entries...} ::/")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("SOURCE_DATE_EPOCH", &epoch)
        .run_logged("mcopy (boot partition)", &log)?;
    if b.disk.bootloader == Bootloader::SyslinuxSystemdBoot {
        // BIOS: syslinux's installer (from the image's own syslinux package) writes ldlinux.sys
        // into the FAT through mtools; gptmbr.bin finds the LegacyBIOSBootable partition.
        let syslinux = files.join("usr/bin/syslinux");
        let offset = (l.boot_start * SECTOR).to_string();
        cmd!(sh, "{syslinux} --install --directory /syslinux --offset {offset} {tmp}")
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("SOURCE_DATE_EPOCH", &epoch)
            .run_logged("syslinux --install", &log)?;
        let mbr = fs::read(files.join("usr/lib/syslinux/mbr/gptmbr.bin")).map_err(|e| anyhow!("gptmbr.bin: {e}"))?;
        let mut f = fs::OpenOptions::new().write(true).open(&tmp)?;
        f.write_all(&mbr[..440.min(mbr.len())])?;
    }

    // Root partition (ext4), populated straight from the tar.
    let root_part = b.root_part();
    let uuid = fixed_uuid(&b.name, "fs-root");
    let label = &root_part.label;
    let extended = format!(
        "offset={},hash_seed={},lazy_itable_init=0,root_owner=0:0",
        l.root_start * SECTOR,
        fixed_uuid(&b.name, "fs-root-hash")
    );
    let (root_tar, size) = (&root.path, format!("{}k", l.root_sectors * SECTOR / 1024));
    cmd!(
        sh,
        "mkfs.ext4 -q -F -t ext4 -b 4096 -I 256 -m 1 -L {label} -U {uuid} -E {extended} -d {root_tar} {tmp} {size}"
    )
    .env("E2FSPROGS_FAKE_TIME", &epoch)
    .env("SOURCE_DATE_EPOCH", &epoch)
    .run_logged("mkfs.ext4 -d (root file system)", &log)?;

    // Keep the boot files next to the image (kernel, initrd, dtb: direct boots in QEMU tests).
    let staged = dir.join("boot.tmp");
    let _ = fs::remove_dir_all(&staged);
    fs::rename(&fat, &staged)?;
    let _ = fs::remove_dir_all(&work);
    fs::rename(&tmp, &path)?;
    prune(dir, "disk-", &path);
    fs::rename(&staged, path.with_extension("boot"))?;
    Ok(Stage { path, key, cached: false })
}

/// Extracts what the boot partition needs from the root tar into `files`, and lays out the
/// boot partition's tree in `fat`.
fn boot_files(ctx: &Ctx, root: &Stage, files: &Path, fat: &Path) -> Result<()> {
    let b = ctx.board;
    let log = ctx.logs.join("disk.log");
    let members: &[&str] = match b.disk.bootloader {
        Bootloader::SyslinuxSystemdBoot => &[
            "./boot/vmlinuz-*",
            "./boot/initrd.img-*",
            "./usr/lib/systemd/boot/efi/systemd-bootx64.efi",
            "./usr/lib/syslinux/mbr/gptmbr.bin",
            "./usr/bin/syslinux",
        ],
        Bootloader::RaspiFirmware => &["./boot/firmware/*"],
    };
    let sh = crate::paths::shell()?;
    let root_tar = &root.path;
    cmd!(sh, "tar -xf {root_tar} -C {files} --wildcards --no-same-owner {members...}")
        .run_logged("tar -x (boot files from the root file system)", &log)?;
    let cmdline = cmdline(b);
    match b.disk.bootloader {
        Bootloader::SyslinuxSystemdBoot => {
            let kernel = newest(&files.join("boot"), "vmlinuz-")?;
            let initrd = newest(&files.join("boot"), "initrd.img-")?;
            let put = |rel: &str, data: &[u8]| -> Result<()> {
                let p = fat.join(rel);
                mkdirs(p.parent().unwrap())?;
                super::overlay::write_file(&p, data, 0o644)
            };
            let read = |p: &Path| fs::read(p).map_err(|e| anyhow!("cannot read {}: {e}", p.display()));
            put("vmlinuz", &read(&kernel)?)?;
            put("initrd.img", &read(&initrd)?)?;
            put("EFI/BOOT/BOOTX64.EFI", &read(&files.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi"))?)?;
            put("loader/loader.conf", b"default spin.conf\ntimeout 0\nconsole-mode keep\neditor no\n")?;
            put(
                "loader/entries/spin.conf",
                format!("title SPIN router ({})\nlinux /vmlinuz\ninitrd /initrd.img\noptions {cmdline}\n", b.name)
                    .as_bytes(),
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
        Bootloader::RaspiFirmware => {
            // raspi-firmware filled /boot/firmware in the rootfs stage; the command line is ours.
            copy_tree(&files.join("boot/firmware"), fat)?;
            super::overlay::write_file(&fat.join("cmdline.txt"), format!("{cmdline}\n").as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

pub(super) fn newest(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| anyhow!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| file_name(p).starts_with(prefix))
        .collect();
    v.sort();
    v.pop().ok_or_else(|| anyhow!("no {prefix}* in the root file system's /boot"))
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    mkdirs(to)?;
    let mut entries: Vec<PathBuf> = fs::read_dir(from)
        .map_err(|e| anyhow!("cannot read {}: {e}", from.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let dest = to.join(file_name(&p));
        if p.is_dir() {
            copy_tree(&p, &dest)?;
        } else {
            fs::copy(&p, &dest).map_err(|e| anyhow!("cannot copy {}: {e}", p.display()))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// Sets every mtime under `dir` (and `dir` itself) to `epoch` (mcopy -m keeps them).
fn set_mtimes(dir: &Path, epoch: u64) -> Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.is_dir() {
            set_mtimes(&p, epoch)?;
        }
        let f = File::open(&p)?;
        f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))?;
    }
    let f = File::open(dir)?;
    Ok(f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::debian_for_tests as debian;

    #[test]
    fn layouts_are_aligned_and_fit() {
        for name in ["x86_64", "rpi3"] {
            let l = layout(&debian(name));
            assert_eq!(l.boot_start % 2048, 0);
            assert_eq!(l.root_start % 2048, 0);
            assert!(l.root_start >= l.boot_start + l.boot_sectors);
            assert!(l.total_bytes >= (l.root_start + l.root_sectors) * SECTOR);
        }
    }

    #[test]
    fn cmdlines_have_root_and_consoles_last_console_last() {
        let x = debian("x86_64");
        let c = cmdline(&x);
        assert!(c.starts_with("console=tty0 console=ttyS0,115200 root=PARTUUID="), "{c}");
        assert!(c.contains("net.ifnames=0"));
        let r = debian("rpi3");
        assert!(cmdline(&r).contains("root=LABEL=RASPIROOT"));
        assert!(sfdisk_script(&r).contains("label: dos"));
        assert!(sfdisk_script(&x).contains("attrs=\"LegacyBIOSBootable\""));
    }
}
