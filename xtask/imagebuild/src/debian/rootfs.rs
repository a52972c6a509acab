//! Stage rootfs: the root file system as a tar, made by mmdebstrap: minbase plus the board's
//! packages, with the board's dpkg path filters (no docs, man pages, locales, unneeded kernel
//! modules) and an initramfs of only the listed modules.

use std::fs;

use anyhow::{Context, Result};
use runner::cmd;

use super::{image_dir, Ctx};
use crate::stage::{file_name, prune, Key, Stage};

fn key(ctx: &Ctx) -> Result<String> {
    let b = ctx.board;
    let d = &b.debian;
    let mut k = Key::new("rootfs");
    k.add(&b.release).add(b.arch.as_str()).add(&d.mirror).add(b.components()).add(b.packages().join(","));
    k.add(d.path_exclude.join("\n")).add(d.path_include.join("\n"));
    k.add(b.kernel.initramfs_modules.join(" ")).add(ctx.epoch.to_string());
    for hook in ["setup.sh", "customize.sh"] {
        k.add_file(&image_dir().join("hooks").join(hook))?;
    }
    Ok(k.finish())
}

/// `refresh`: build it even when a cached one matches (new package versions from the mirror).
pub fn build(ctx: &Ctx, refresh: bool) -> Result<Stage> {
    let b = ctx.board;
    let d = &b.debian;
    let key = key(ctx)?;
    let path = ctx.dir.join(format!("rootfs-{key}.tar"));
    if path.exists() && !refresh {
        eprintln!("  cached: {}", file_name(&path));
        return Ok(Stage { path, key, cached: true });
    }
    let tmp = ctx.dir.join(format!("rootfs-{key}.tar.tmp"));
    let hooks = image_dir().join("hooks");
    let arch = format!("--arch={}", b.arch);
    let components = format!("--components={}", b.components());
    let packages = b.packages();
    let include = format!("--include={}", packages.join(","));
    let mut filters: Vec<String> = d.path_exclude.iter().map(|g| format!("--dpkgopt=path-exclude={g}")).collect();
    filters.extend(d.path_include.iter().map(|g| format!("--dpkgopt=path-include={g}")));
    let setup_hook = format!("--setup-hook={}", hooks.join("setup.sh").display());
    let customize_hook = format!("--customize-hook={}", hooks.join("customize.sh").display());
    let (release, mirror) = (&b.release, &d.mirror);
    let log = ctx.logs.join("rootfs.log");
    let _ = fs::remove_file(&log);
    let sh = crate::paths::shell()?;
    cmd!(sh, "mmdebstrap --variant=minbase --mode=root --format=tar {arch} {components} {include} --dpkgopt=force-confold {filters...} {setup_hook} {customize_hook} {release} {tmp} {mirror}")
        .env("SPIN_INITRAMFS_MODULES", b.kernel.initramfs_modules.join(" "))
        .env("SOURCE_DATE_EPOCH", ctx.epoch.to_string())
        .run_logged(&format!("mmdebstrap {} {} ({} packages)", b.release, b.arch, packages.len()), &log)?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot rename {}", tmp.display()))?;
    prune(&ctx.dir, "rootfs-", &path);
    Ok(Stage { path, key, cached: false })
}
