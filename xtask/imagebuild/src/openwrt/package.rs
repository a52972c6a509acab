//! The package: `spind_VERSION-1_PKGARCH.ipk` (from `image/openwrt/package` and
//! `image/openwrt/control`, in the `.ipk` format of [`super::ipk`]), its check, and the
//! ImageBuilder's `FILES` overlay (from `image/openwrt/overlay`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use runner::cmd;

use super::{cross::check_binary, ipk};
use crate::board::OpenWrtBoard;

/// Release of the spind package (the `-N` in `Version:`).
pub const PKG_RELEASE: u32 = 1;
/// Kernel parts and tools spind needs on OpenWrt 24.10, besides the C library:
/// the `nft` binary (spind applies its `table inet spin` with `nft -f -`), nf_tables with
/// `log`/`limit`/inet (kmod-nft-core), NFLOG delivery to userspace (kmod-nfnetlink-log: DNS
/// answers and blocked packets) and conntrack dumps/events over netlink (kmod-nf-conntrack-netlink).
pub const DEPENDS: &str = "libc, nftables, kmod-nft-core, kmod-nfnetlink-log, kmod-nf-conntrack-netlink";

pub fn openwrt_dir() -> PathBuf {
    crate::paths::root().join("image/openwrt")
}

/// SOURCE_DATE_EPOCH, else the last commit's time, else 0: fixed mtimes in every archive.
pub fn source_date_epoch() -> u64 {
    if let Some(e) = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok()) {
        return e;
    }
    let Ok(sh) = crate::paths::shell() else { return 0 };
    cmd!(sh, "git log -1 --format=%ct").read().ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

pub fn spind_version() -> Result<String> {
    let toml = std::fs::read_to_string(crate::paths::root().join("spind/Cargo.toml"))?;
    toml.lines()
        .find_map(|l| l.strip_prefix("version = ").map(|v| v.trim_matches('"').to_string()))
        .context("no version in spind/Cargo.toml")
}

/// Copies `from` into `to` recursively, keeping the executable bit and normalising other modes
/// (0755 for executables and directories, 0644 for files).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).map_err(|e| anyhow!("{}: {e}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    let mut entries: Vec<_> =
        std::fs::read_dir(from).map_err(|e| anyhow!("{}: {e}", from.display()))?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let src = e.path();
        let dst = to.join(e.file_name());
        let meta = std::fs::metadata(&src)?;
        if meta.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            copy(&src, &dst)?;
            let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// The control fields of the spind package.
pub fn control_fields(board: &OpenWrtBoard, version: &str, installed_size: u64) -> ipk::Control {
    vec![
        ("Package", "spind".into()),
        ("Version", format!("{version}-{PKG_RELEASE}")),
        ("Depends", DEPENDS.into()),
        ("Source", "https://github.com/SIDN/spin (Rust successor: spind/ in this repository)".into()),
        ("SourceName", "spind".into()),
        ("License", "GPL-2.0-only".into()),
        ("Section", "net".into()),
        ("URL", "https://www.sidnlabs.nl/en/news-and-blogs/spin".into()),
        ("Maintainer", "SPIN developers <spin@sidn.nl>".into()),
        ("Architecture", board.openwrt.package_arch.clone()),
        ("Installed-Size", installed_size.to_string()),
        (
            "Description",
            "SPIN daemon: shows which device on the LAN talks to which internet service, and\n \
             blocks what you do not want. Web UI on port 13026 of the router's LAN address."
                .into(),
        ),
    ]
}

/// Builds `spind_VERSION-1_PKGARCH.ipk` in `out` from the binary and `image/openwrt/`.
pub fn build_ipk(board: &OpenWrtBoard, spind: &Path, work: &Path, out: &Path, epoch: u64) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let data = work.join("pkg-data");
    let control = work.join("pkg-control");
    crate::stage::reset_dir(&data)?;
    crate::stage::reset_dir(&control)?;
    copy_tree(&openwrt_dir().join("package"), &data)?;
    let sbin = data.join("usr/sbin");
    std::fs::create_dir_all(&sbin)?;
    copy(spind, &sbin.join("spind"))?;
    std::fs::set_permissions(sbin.join("spind"), std::fs::Permissions::from_mode(0o755))?;
    for dir in ["usr", "usr/sbin"] {
        std::fs::set_permissions(data.join(dir), std::fs::Permissions::from_mode(0o755))?;
    }
    // Config stays with the user's edits on upgrade: opkg keeps conffiles that changed.
    std::fs::set_permissions(data.join("etc/config/spin"), std::fs::Permissions::from_mode(0o600))?;

    copy_tree(&openwrt_dir().join("control"), &control)?;
    std::fs::write(control.join("conffiles"), "/etc/config/spin\n")?;
    let version = spind_version()?;
    let size = ipk::installed_size(&data)?;
    std::fs::write(control.join("control"), ipk::render_control(&control_fields(board, &version, size)))?;
    std::fs::set_permissions(control.join("control"), std::fs::Permissions::from_mode(0o644))?;
    std::fs::set_permissions(control.join("conffiles"), std::fs::Permissions::from_mode(0o644))?;

    let path = out.join(format!("spind_{version}-{PKG_RELEASE}_{}.ipk", board.openwrt.package_arch));
    ipk::build(&data, &control, &work.join("ipk-work"), &path, epoch)?;
    Ok(path)
}

/// Checks a built spind package: archive layout, control fields, files and modes, maintainer
/// scripts, and that the spind inside is a static binary for the board's architecture.
pub fn verify_ipk(board: &OpenWrtBoard, path: &Path, scratch: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |what: String| Err(anyhow!("{}: {what}", path.display()));
    let info = ipk::inspect(path, scratch)?;
    if info.outer != ["./debian-binary", "./data.tar.gz", "./control.tar.gz"] {
        return fail(format!("outer members {:?}", info.outer));
    }
    if info.debian_binary != "2.0\n" {
        return fail(format!("debian-binary is {:?}", info.debian_binary));
    }
    if !info.control_text.starts_with("Package: spind\n") {
        return fail("the control file must start with Package: spind".into());
    }
    let version = format!("{}-{PKG_RELEASE}", spind_version()?);
    let size = ipk::installed_size(&scratch.join("data"))?.to_string();
    let want = [
        ("Package", "spind"),
        ("Version", version.as_str()),
        ("Depends", DEPENDS),
        ("Architecture", board.openwrt.package_arch.as_str()),
        ("Section", "net"),
        ("Installed-Size", size.as_str()),
    ];
    for (k, v) in want {
        if info.control.get(k).map(String::as_str) != Some(v) {
            return fail(format!("control field {k} is {:?}, expected {v:?}", info.control.get(k)));
        }
    }
    for k in ["Source", "Maintainer", "Description", "License"] {
        if info.control.get(k).is_none_or(|v| v.is_empty()) {
            return fail(format!("control field {k} missing"));
        }
    }
    for m in ["./control", "./conffiles", "./postinst", "./prerm"] {
        if !info.control_members.iter().any(|x| x == m) {
            return fail(format!("control.tar.gz has no {m}: {:?}", info.control_members));
        }
    }
    let conffiles = std::fs::read_to_string(info.control_path("conffiles"))?;
    if conffiles != "/etc/config/spin\n" {
        return fail(format!("conffiles is {conffiles:?}"));
    }
    for (script, call) in [("postinst", "default_postinst"), ("prerm", "default_prerm")] {
        let p = info.control_path(script);
        let text = std::fs::read_to_string(&p)?;
        let mode = std::fs::metadata(&p)?.permissions().mode();
        if !text.starts_with("#!/bin/sh") || !text.contains(call) || mode & 0o111 == 0 {
            return fail(format!("{script} must be an executable sh script calling {call}"));
        }
    }
    let files = [
        ("/usr/sbin/spind", 0o755),
        ("/etc/init.d/spind", 0o755),
        ("/etc/config/spin", 0o600),
        ("/etc/uci-defaults/90-spind", 0o755),
        ("/etc/uci-defaults/91-spind-admin", 0o755),
        ("/etc/sysctl.d/90-spind.conf", 0o644),
    ];
    for (file, mode) in files {
        if !info.data_members.iter().any(|m| m == &format!(".{file}")) {
            return fail(format!("data.tar.gz has no .{file}: {:?}", info.data_members));
        }
        let got = std::fs::metadata(info.data_path(file))?.permissions().mode() & 0o777;
        if got != mode {
            return fail(format!("{file} has mode {got:o}, expected {mode:o}"));
        }
    }
    let bin = info.data_path("/usr/sbin/spind");
    check_binary(board.arch, &bin).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    Ok(())
}

/// The ImageBuilder's `FILES` directory: `image/openwrt/overlay` (first-boot uci-defaults).
pub fn build_overlay(files: &Path) -> Result<()> {
    crate::stage::reset_dir(files)?;
    copy_tree(&openwrt_dir().join("overlay"), files)
}

pub(super) fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map(|_| ()).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}
