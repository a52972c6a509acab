//! Stage outputs: the board's outputs in `out/`: the raw image (hard link), `.img.xz` (from
//! cached xz blocks) + `.sha256`, `.qcow2`, `.ova`, and the boot files for direct kernel boots
//! (QEMU tests): kernel, initrd, (dtb), the kernel command line.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use runner::cmd;
use runner::progress::{qemu_img_progress, Progress};

use super::disk::{cmdline, newest};
use super::{xzblocks, Ctx};
use crate::board::{Bootloader, DebianBoard, DebianOutput};
use crate::stage::{file_name, Stage};

/// The board's outputs in `out/`: raw image (hard link), `.img.xz` + `.sha256`, `.qcow2`, `.ova`,
/// and the boot files for direct kernel boots (QEMU tests): kernel, initrd, (dtb), cmdline.
pub fn build(ctx: &Ctx, disk: &Stage) -> Result<Vec<PathBuf>> {
    let b = ctx.board;
    let out = &ctx.out;
    let base = format!("spin-{}", b.name);
    let stamp = out.join(".key");
    let kinds: Vec<&str> = b.outputs.iter().map(|o| o.as_str()).collect();
    let want_key = format!("{}:{}", disk.key, kinds.join(","));
    let mut artifacts = Vec::new();
    let raw = out.join(format!("{base}.img"));
    artifacts.push(raw.clone());
    for o in &b.outputs {
        match o {
            DebianOutput::ImgXz => {
                artifacts.push(out.join(format!("{base}.img.xz")));
                artifacts.push(out.join(format!("{base}.img.xz.sha256")));
            }
            DebianOutput::Qcow2 => artifacts.push(out.join(format!("{base}.qcow2"))),
            DebianOutput::Ova => artifacts.push(out.join(format!("{base}.ova"))),
        }
    }
    let boot_dir = disk.path.with_extension("boot");
    let boot_files = boot_artifacts(b, &boot_dir, out)?;
    artifacts.extend(boot_files.iter().map(|(_, to)| to.clone()));
    artifacts.push(out.join(format!("{base}.boot.txt")));
    if fs::read_to_string(&stamp).ok().as_deref() == Some(want_key.as_str()) && artifacts.iter().all(|a| a.exists()) {
        eprintln!("  cached: outputs for disk {}", disk.key);
        return Ok(artifacts);
    }
    let _ = fs::remove_file(&stamp);

    let _ = fs::remove_file(&raw);
    fs::hard_link(&disk.path, &raw).or_else(|_| fs::copy(&disk.path, &raw).map(|_| ()))?;
    for (from, to) in &boot_files {
        let _ = fs::remove_file(to);
        fs::copy(from, to).map_err(|e| anyhow!("cannot copy {}: {e}", from.display()))?;
    }
    fs::write(out.join(format!("{base}.boot.txt")), boot_txt(b, &boot_files))?;

    // The outputs only read the disk: made side by side (xz compresses one block per core,
    // qemu-img mostly uses one), each with its own log.
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let jobs: Vec<_> = b.outputs.iter().map(|&kind| s.spawn(move || make_output(ctx, disk, kind))).collect();
        jobs.into_iter().map(|j| j.join().unwrap_or_else(|_| Err(anyhow!("panicked")))).collect()
    });
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).map(|e| format!("{e:#}")).collect();
    if !errors.is_empty() {
        return Err(anyhow!(errors.join("\n")));
    }
    fs::write(&stamp, &want_key)?;
    Ok(artifacts)
}

/// Makes one output (`img.xz`, `qcow2`, `ova`) from the disk, atomically.
fn make_output(ctx: &Ctx, disk: &Stage, kind: DebianOutput) -> Result<()> {
    let base = format!("spin-{}", ctx.board.name);
    let out = &ctx.out;
    let log = ctx.logs.join(format!("output-{kind}.log"));
    let _ = fs::remove_file(&log);
    match kind {
        DebianOutput::ImgXz => {
            let xz = out.join(format!("{base}.img.xz"));
            let p = Progress::start("xz (img.xz)");
            let stats =
                xzblocks::compress(&disk.path, &xz, &xzblocks::cache_dir(&ctx.dir), &XZ_SETTINGS, &|done, total| {
                    p.fraction.set(done as u64, total as u64)
                });
            p.stop();
            let stats = stats?;
            eprintln!("  {base}.img.xz: {} of {} blocks compressed, the others cached", stats.compressed, stats.blocks);
            write_atomic(
                &out.join(format!("{base}.img.xz.sha256")),
                format!("{}  {base}.img.xz\n", stats.sha256).as_bytes(),
            )
        }
        DebianOutput::Qcow2 => {
            let q = out.join(format!("{base}.qcow2"));
            let tmp = q.with_extension("qcow2.tmp");
            let _ = fs::remove_file(&tmp);
            let (sh, raw) = (crate::paths::shell()?, &disk.path);
            cmd!(sh, "qemu-img convert -p -f raw -O qcow2 -c {raw} {tmp}").run_progress(
                "qcow2 (qemu-img)",
                &log,
                qemu_img_progress,
            )?;
            Ok(fs::rename(&tmp, &q)?)
        }
        DebianOutput::Ova => super::ova::build(ctx, &disk.path, &out.join(format!("{base}.ova")), &log),
    }
}

/// `xz -1` in 64 MiB blocks: fast, and the images stay well under their size targets (README).
const XZ_SETTINGS: xzblocks::XzSettings = xzblocks::XzSettings { preset: "-1", block_size: 64 << 20 };

fn write_atomic(p: &Path, data: &[u8]) -> Result<()> {
    let tmp = p.with_extension("tmp");
    fs::write(&tmp, data).and_then(|_| fs::rename(&tmp, p)).map_err(|e| anyhow!("cannot write {}: {e}", p.display()))
}

/// (file in the boot tree, name in out/) for the kernel, initrd and (Raspberry Pi) device tree.
fn boot_artifacts(b: &DebianBoard, boot_dir: &Path, out: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let base = format!("spin-{}", b.name);
    let mut v = Vec::new();
    if b.disk.bootloader == Bootloader::RaspiFirmware {
        v.push((newest(boot_dir, "vmlinuz-")?, out.join(format!("{base}.vmlinuz"))));
        v.push((newest(boot_dir, "initrd.img-")?, out.join(format!("{base}.initrd.img"))));
        v.push((boot_dir.join("bcm2837-rpi-3-b.dtb"), out.join("bcm2837-rpi-3-b.dtb")));
    } else {
        v.push((boot_dir.join("vmlinuz"), out.join(format!("{base}.vmlinuz"))));
        v.push((boot_dir.join("initrd.img"), out.join(format!("{base}.initrd.img"))));
    }
    Ok(v)
}

fn boot_txt(b: &DebianBoard, files: &[(PathBuf, PathBuf)]) -> String {
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
