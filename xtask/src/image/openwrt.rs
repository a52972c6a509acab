//! OpenWrt boards (GL.iNet MT3000/MT6000 on mediatek/filogic, AR150 on ath79): spind cross-built
//! as a static musl binary, checked under qemu-user, packed as an `.ipk` with a procd init script
//! and UCI config, a `FILES` overlay for the ImageBuilder, and, given an ImageBuilder (or online,
//! downloaded and checked against the pinned sha256), the sysupgrade image.
//!
//! Stages and where they write (all under `target/`):
//! - spind: `cargo build` (aarch64: stable + rust-lld; mips: pinned nightly `-Zbuild-std` with
//!   cargo-zigbuild; both compile C code (ring's) with the pinned zig in `target/tools/`, for
//!   MIPS soft-float like Rust's targets), copied to `target/openwrt/BOARD/spind`;
//! - package: `target/images/BOARD/spind_VERSION_PKGARCH.ipk` (from `image/openwrt/package` and
//!   `image/openwrt/control`);
//! - overlay: `target/images/BOARD/files/` (from `image/openwrt/overlay`);
//! - image: `make image PROFILE=... PACKAGES="... /abs/spind.ipk" FILES=... BIN_DIR=...` in the
//!   ImageBuilder, skipped when its inputs did not change.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::board::{self, Board};
use super::elf;
use super::ipk;
use crate::util;

/// Nightly used for MIPS (tier 3: std is built from source). Pinned for reproducible builds.
pub const MIPS_NIGHTLY: &str = "nightly-2026-05-20";
/// From PyPI; other zig versions failed to link Rust's MIPS musl std on this host.
pub const ZIG_VERSION: &str = "0.14.1";
pub const CARGO_ZIGBUILD_VERSION: &str = "0.20.1";
/// Release of the spind package (the `-N` in `Version:`).
pub const PKG_RELEASE: u32 = 1;
/// Kernel parts and tools spind needs on OpenWrt 24.10, besides the C library:
/// the `nft` binary (spind applies its `table inet spin` with `nft -f -`), nf_tables with
/// `log`/`limit`/inet (kmod-nft-core), NFLOG delivery to userspace (kmod-nfnetlink-log: DNS
/// answers and blocked packets) and conntrack dumps/events over netlink (kmod-nf-conntrack-netlink).
pub const DEPENDS: &str =
    "libc, nftables, kmod-nft-core, kmod-nfnetlink-log, kmod-nf-conntrack-netlink";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arch {
    Aarch64,
    Mips,
    Mipsel,
}

impl Arch {
    /// The values of a board file's `arch` for `base = "openwrt"`.
    pub const NAMES: &'static [&'static str] = &["aarch64", "mips", "mipsel"];

    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "aarch64" => Some(Arch::Aarch64),
            "mips" => Some(Arch::Mips),
            "mipsel" => Some(Arch::Mipsel),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Mips => "mips",
            Arch::Mipsel => "mipsel",
        }
    }
    /// The Rust target for OpenWrt's musl on this architecture.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
            Arch::Mips => "mips-unknown-linux-musl",
            Arch::Mipsel => "mipsel-unknown-linux-musl",
        }
    }
    /// Tier 3 targets have no prebuilt std: nightly `-Zbuild-std` with zig as the linker.
    pub fn needs_build_std(self) -> bool {
        !matches!(self, Arch::Aarch64)
    }
    pub fn elf(self) -> (u8, bool, u16) {
        match self {
            Arch::Aarch64 => (64, false, elf::EM_AARCH64),
            Arch::Mips => (32, true, elf::EM_MIPS),
            Arch::Mipsel => (32, false, elf::EM_MIPS),
        }
    }
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::Aarch64 => "qemu-aarch64-static",
            Arch::Mips => "qemu-mips-static",
            Arch::Mipsel => "qemu-mipsel-static",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    Ipk,
    Overlay,
    Sysupgrade,
}

/// The OpenWrt builder's view of a board file (`board-configs/NAME.toml` with
/// `base = "openwrt"`): made from a validated [`Board`], typed where the builder needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenwrtBoard {
    /// The board file, for messages.
    pub file: String,
    pub name: String,
    /// The OpenWrt release (`24.10.7`).
    pub release: String,
    pub arch: Arch,
    pub rust_target: String,
    /// Added to the ImageBuilder's PACKAGES; `-name` removes a default package.
    pub packages: Vec<String>,
    pub outputs: Vec<Output>,
    pub target: String,
    pub subtarget: String,
    pub profile: String,
    pub package_arch: String,
    pub imagebuilder_url: String,
    /// `None`: no verified checksum; a download is refused.
    pub imagebuilder_sha256: Option<String>,
}

impl OpenwrtBoard {
    /// Reads and validates `board-configs/NAME.toml` (see [`board`]); it must be an OpenWrt board.
    pub fn load(name: &str) -> Result<OpenwrtBoard, String> {
        OpenwrtBoard::from_board(&board::load(name)?)
    }

    /// The view of a validated board; an error if it is not an OpenWrt board.
    pub fn from_board(b: &Board) -> Result<OpenwrtBoard, String> {
        let file = b.file.display().to_string();
        let (Some(o), Some(arch)) = (b.openwrt.as_ref(), Arch::parse(&b.arch)) else {
            return Err(format!(
                "{file}: field `base`: {:?} is not an OpenWrt board (this builder takes base = \"openwrt\")",
                b.base
            ));
        };
        let outputs = b
            .outputs
            .iter()
            .map(|o| match o.as_str() {
                "ipk" => Ok(Output::Ipk),
                "overlay" => Ok(Output::Overlay),
                "sysupgrade" => Ok(Output::Sysupgrade),
                _ => Err(format!(
                    "{file}: field `outputs`: {o:?} is not an OpenWrt output"
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(OpenwrtBoard {
            file,
            name: b.name.clone(),
            release: b.release.clone(),
            arch,
            rust_target: b.rust_target.clone(),
            packages: o.packages.clone(),
            outputs,
            target: o.target.clone(),
            subtarget: o.subtarget.clone(),
            profile: o.profile.clone(),
            package_arch: o.package_arch.clone(),
            imagebuilder_url: o.imagebuilder_url.clone(),
            imagebuilder_sha256: (!o.imagebuilder_sha256.is_empty())
                .then(|| o.imagebuilder_sha256.clone()),
        })
    }

    /// The ImageBuilder tarball's file name.
    pub fn imagebuilder_file(&self) -> &str {
        self.imagebuilder_url.rsplit('/').next().unwrap_or_default()
    }
}

/// How to build.
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    /// `--imagebuilder PATH`: an unpacked ImageBuilder directory or its tarball.
    pub imagebuilder: Option<PathBuf>,
    /// `--offline`: never try to download the ImageBuilder.
    pub offline: bool,
    /// `--spind PATH`: use this binary instead of cross-building (it is still checked).
    pub spind_binary: Option<PathBuf>,
    /// Where outputs go; default `target/images/BOARD`.
    pub out_dir: Option<PathBuf>,
}

/// One thing the build produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    pub path: PathBuf,
    pub what: String,
}

/// The result of [`build`] beyond the artifacts: timings and, when the image was not built, why.
#[derive(Debug, Default)]
pub struct Report {
    pub artifacts: Vec<Artifact>,
    pub timings: Vec<(String, f64)>,
    /// The stripped spind size in bytes.
    pub spind_size: u64,
    /// Set when the sysupgrade image could not be built: the message telling how to get it.
    pub missing: Option<String>,
}

/// `cargo xtask image --board NAME` for an OpenWrt board. Prints progress, the artifacts and
/// timings, and (without an ImageBuilder) what is missing as the last thing.
pub fn build(board: &OpenwrtBoard, opts: &ImageOptions) -> Result<Vec<Artifact>, String> {
    let report = build_report(board, opts)?;
    print_report(board, &report);
    Ok(report.artifacts)
}

pub fn print_report(board: &OpenwrtBoard, r: &Report) {
    eprintln!("\nxtask: {} artifacts:", board.name);
    for a in &r.artifacts {
        let (size, sum) = if a.path.is_file() {
            let size = std::fs::metadata(&a.path).map(|m| m.len()).unwrap_or(0);
            (human(size), sha256_file(&a.path).unwrap_or_default())
        } else {
            ("dir".to_string(), String::new())
        };
        eprintln!(
            "  {:<10} {}  {}\n             sha256 {}",
            size,
            a.path.display(),
            a.what,
            if sum.is_empty() { "-" } else { &sum }
        );
    }
    eprintln!("xtask: timings:");
    for (stage, secs) in &r.timings {
        eprintln!("  {stage:<28} {secs:>7.1} s");
    }
    if let Some(m) = &r.missing {
        eprintln!("\n{m}");
    }
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

pub fn work_dir(board: &OpenwrtBoard) -> PathBuf {
    util::root().join("target/openwrt").join(&board.name)
}

pub fn build_report(board: &OpenwrtBoard, opts: &ImageOptions) -> Result<Report, String> {
    let mut r = Report::default();
    let work = work_dir(board);
    let out = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| util::root().join("target/images").join(&board.name));
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    let t = Instant::now();
    host_tools(board)?;
    r.timings
        .push(("host tools".into(), t.elapsed().as_secs_f64()));

    // spind for the target, stripped, checked.
    let t = Instant::now();
    let built = match &opts.spind_binary {
        Some(p) => p.clone(),
        None => cross_build(board.arch)?,
    };
    r.timings.push((
        format!("spind ({})", board.rust_target),
        t.elapsed().as_secs_f64(),
    ));
    let t = Instant::now();
    let spind = work.join("spind");
    copy(&built, &spind)?;
    strip(&spind)?;
    let info = check_binary(board.arch, &spind)?;
    r.spind_size = std::fs::metadata(&spind).map_err(|e| e.to_string())?.len();
    eprintln!("xtask: spind: {} ({} bytes)", info.describe(), r.spind_size);
    let ran = run_under_qemu(board.arch, &spind, &work)?;
    eprintln!(
        "xtask: spind under {}: {}",
        board.arch.qemu(),
        ran.lines().next().unwrap_or("")
    );
    r.timings
        .push(("check under qemu-user".into(), t.elapsed().as_secs_f64()));
    r.artifacts.push(Artifact {
        path: spind.clone(),
        what: format!("spind, {}", info.describe()),
    });

    // The package and the overlay.
    let t = Instant::now();
    let epoch = source_date_epoch();
    let ipk_path = build_ipk(board, &spind, &work, &out, epoch)?;
    // Read the package back: layout, control fields, modes, the binary's architecture.
    verify_ipk(board, &ipk_path, &work.join("ipk-check"))?;
    r.artifacts.push(Artifact {
        path: ipk_path.clone(),
        what: format!("opkg package for {}", board.package_arch),
    });
    let files = out.join("files");
    build_overlay(&files)?;
    r.artifacts.push(Artifact {
        path: files.clone(),
        what: "FILES overlay for the ImageBuilder".into(),
    });
    r.timings
        .push(("package + overlay".into(), t.elapsed().as_secs_f64()));

    if !board.outputs.contains(&Output::Sysupgrade) {
        return Ok(r);
    }
    let t = Instant::now();
    match resolve_imagebuilder(board, opts)? {
        Ok(ib) => {
            let images = run_imagebuilder(board, &ib, &ipk_path, &files, &out.join("openwrt"))?;
            r.artifacts.extend(images);
            r.timings
                .push(("ImageBuilder make image".into(), t.elapsed().as_secs_f64()));
        }
        Err(why) => r.missing = Some(missing_message(board, &why)),
    }
    Ok(r)
}

/// The message printed when there is no ImageBuilder.
pub fn missing_message(board: &OpenwrtBoard, why: &str) -> String {
    let file = board.imagebuilder_file();
    let check = match &board.imagebuilder_sha256 {
        Some(sha) => format!("  check it:\n    echo '{sha}  {file}' | sha256sum -c\n"),
        None => format!(
            "  {} pins no verified sha256 for it: compare it with OpenWrt's sha256sums file next to it\n",
            board.file
        ),
    };
    format!(
        "xtask: {name}: built spind, the .ipk and the FILES overlay, but NOT the sysupgrade image:\n  \
         no OpenWrt ImageBuilder ({why}).\n  \
         On a machine with internet access, download\n    {url}\n{check}  \
         copy it here and run\n    cargo xtask image --board {name} --imagebuilder /path/to/{file}\n  \
         (an unpacked ImageBuilder directory works too). To add spind to a router that already runs\n  \
         OpenWrt {release}, copy the .ipk to it and `opkg install` it (README, GL.iNet).",
        name = board.name,
        url = board.imagebuilder_url,
        release = board.release,
    )
}

// ---------------------------------------------------------------------------------------------
// Host tools

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Installs a Debian package as root, else says how to. `backports`: prefer bookworm-backports
/// (QEMU 10 there; the machine's qemu-utils may already be from backports).
pub fn ensure_tool(program: &str, package: &str, backports: bool) -> Result<(), String> {
    if have(program) {
        return Ok(());
    }
    let from_backports = backports
        && Command::new("apt-cache")
            .args(["policy", package])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("-backports"))
            .unwrap_or(false);
    let target_release = if from_backports {
        "-t bookworm-backports "
    } else {
        ""
    };
    let install = format!("apt-get install -y --no-install-recommends {target_release}{package}");
    if !util::is_root() || !Path::new("/etc/debian_version").exists() {
        return Err(format!(
            "missing host tool {program}: install it with `sudo {install}`"
        ));
    }
    eprintln!("xtask: {program} is missing; installing {package}");
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
    ]);
    if from_backports {
        cmd.args(["-t", "bookworm-backports"]);
    }
    cmd.arg(package);
    if util::run(&mut cmd).is_err() {
        util::run(Command::new("apt-get").args(["update", "-q"]))?;
        util::run(&mut cmd)?;
    }
    if have(program) {
        Ok(())
    } else {
        Err(format!(
            "installed {package} but {program} is still not on PATH"
        ))
    }
}

fn host_tools(board: &OpenwrtBoard) -> Result<(), String> {
    ensure_tool("tar", "tar", false)?;
    ensure_tool("gzip", "gzip", false)?;
    ensure_tool("sha256sum", "coreutils", false)?;
    ensure_tool(board.arch.qemu(), "qemu-user-static", true)?;
    if !have("rustup") {
        return Err("missing rustup: install it from https://rustup.rs (xtask adds targets and toolchains with it)".into());
    }
    Ok(())
}

fn capture(cmd: &mut Command) -> Result<String, String> {
    let o = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", util::show(cmd)))?;
    if !o.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            util::show(cmd),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// spind for the target

/// Cross-builds spind (release profile: LTO, opt-level s, panic abort, strip) and returns the path.
pub fn cross_build(arch: Arch) -> Result<PathBuf, String> {
    let target = arch.rust_target();
    let mut cmd;
    if arch.needs_build_std() {
        let toolchain = ensure_nightly()?;
        let zig = ensure_zig_tools()?;
        cmd = Command::new("rustup");
        cmd.args([
            "run",
            &toolchain,
            "cargo",
            "zigbuild",
            "-Zbuild-std=std,panic_abort",
        ]);
        // cargo-zigbuild runs $CARGO if set: it must be the nightly cargo rustup run provides.
        for var in [
            "CARGO",
            "RUSTC",
            "RUSTDOC",
            "RUSTUP_TOOLCHAIN",
            "RUSTC_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        let path = std::env::var("PATH").unwrap_or_default();
        let env_target = target.to_uppercase().replace('-', "_");
        cmd.env("PATH", format!("{}:{path}", zig.bin.display()))
            .env("CARGO_ZIGBUILD_ZIG_PATH", &zig.zig)
            .env("CARGO_ZIGBUILD_CACHE_DIR", &zig.cache)
            // OpenWrt runs static binaries without caring about its libc version; the Rust MIPS
            // musl targets default to dynamic linking.
            .env(
                format!("CARGO_TARGET_{env_target}_RUSTFLAGS"),
                "-C target-feature=+crt-static",
            )
            // cargo-zigbuild keeps a linker that is already set.
            .env(
                format!("CARGO_TARGET_{env_target}_LINKER"),
                zig_linker(arch, &zig)?,
            )
            // And a C compiler: its own one targets mips-linux-musl, hard-float, whose objects
            // (ring's) cannot be linked with Rust's soft-float MIPS code.
            .env(
                format!("CC_{}", target.replace('-', "_")),
                zig_cc(arch, &zig)?,
            );
    } else {
        ensure_rust_target(target)?;
        // ring (rustls) has C and assembly: compiled by zig cc, so no cross gcc is needed.
        let zig = ensure_zig_tools()?;
        let env_target = target.replace('-', "_");
        cmd = util::cargo();
        cmd.arg("build");
        // Static musl with the linker that ships with Rust.
        cmd.env(
            format!("CARGO_TARGET_{}_LINKER", env_target.to_uppercase()),
            "rust-lld",
        )
        .env("CARGO_ZIGBUILD_ZIG_PATH", &zig.zig)
        .env("CARGO_ZIGBUILD_CACHE_DIR", &zig.cache)
        .env(format!("CC_{env_target}"), zig_cc(arch, &zig)?)
        .env(format!("AR_{env_target}"), zig_ar(&zig)?);
    }
    cmd.args([
        "--release",
        "--locked",
        "-p",
        "spind",
        "--bin",
        "spind",
        "--target",
        target,
    ]);
    util::run(&mut cmd)?;
    let bin = util::root()
        .join("target")
        .join(target)
        .join("release/spind");
    if !bin.exists() {
        return Err(format!(
            "the build succeeded but {} is missing",
            bin.display()
        ));
    }
    Ok(bin)
}

fn ensure_rust_target(target: &str) -> Result<(), String> {
    let installed = capture(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    util::run(Command::new("rustup").args(["target", "add", target]))
}

/// The pinned nightly with rust-src. A `nightly` toolchain of exactly that date is used as is.
fn ensure_nightly() -> Result<String, String> {
    let date = MIPS_NIGHTLY.trim_start_matches("nightly-");
    let toolchains = capture(Command::new("rustup").args(["toolchain", "list"]))?;
    let home = std::env::var("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".rustup")
        });
    let channel_date = |tc: &str| -> Option<String> {
        let manifest = home
            .join("toolchains")
            .join(tc)
            .join("lib/rustlib/multirust-channel-manifest.toml");
        let text = std::fs::read_to_string(manifest).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("date = ")
                .map(|d| d.trim_matches('"').to_string())
        })
    };
    let mut toolchain = None;
    for line in toolchains.lines() {
        let tc = line.split_whitespace().next().unwrap_or("");
        if tc.starts_with(MIPS_NIGHTLY)
            || (tc.starts_with("nightly-x86_64") && channel_date(tc).as_deref() == Some(date))
        {
            toolchain = Some(if tc.starts_with(MIPS_NIGHTLY) {
                MIPS_NIGHTLY.to_string()
            } else {
                "nightly".to_string()
            });
            break;
        }
    }
    let toolchain = match toolchain {
        Some(t) => t,
        None => {
            util::run(Command::new("rustup").args([
                "toolchain",
                "install",
                MIPS_NIGHTLY,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))?;
            MIPS_NIGHTLY.to_string()
        }
    };
    let components = capture(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &toolchain,
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        util::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            &toolchain,
        ]))?;
    }
    Ok(toolchain)
}

struct ZigTools {
    bin: PathBuf,
    zig: PathBuf,
    cache: PathBuf,
}

/// zig and cargo-zigbuild from PyPI, pinned, in a venv under `target/tools/`.
fn ensure_zig_tools() -> Result<ZigTools, String> {
    let dir = util::root().join(format!(
        "target/tools/zig-{ZIG_VERSION}-zigbuild-{CARGO_ZIGBUILD_VERSION}"
    ));
    let bin = dir.join("bin");
    let stamp = dir.join(".installed");
    if !stamp.exists() {
        if !have("python3") {
            ensure_tool("python3", "python3", false)?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
        }
        let venv = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&dir)
            .status();
        if !matches!(venv, Ok(s) if s.success()) {
            // Debian's python3 makes venvs only with python3-venv.
            if !util::is_root() {
                return Err("python3 -m venv failed: install python3-venv (`sudo apt-get install python3-venv`)".into());
            }
            std::fs::remove_dir_all(&dir).ok();
            util::run(
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "-q", "python3-venv"]),
            )?;
            util::run(Command::new("python3").arg("-m").arg("venv").arg(&dir))?;
        }
        util::run(Command::new(bin.join("pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            &format!("ziglang=={ZIG_VERSION}"),
            &format!("cargo-zigbuild=={CARGO_ZIGBUILD_VERSION}"),
        ]))?;
        std::fs::write(
            &stamp,
            format!("ziglang=={ZIG_VERSION}\ncargo-zigbuild=={CARGO_ZIGBUILD_VERSION}\n"),
        )
        .map_err(|e| e.to_string())?;
    }
    let zig = find_file(&dir.join("lib"), "ziglang/zig")
        .ok_or_else(|| format!("no ziglang/zig under {}", dir.display()))?;
    Ok(ZigTools {
        bin,
        zig,
        cache: util::root().join("target/tools/zigbuild-cache"),
    })
}

/// The linker for a MIPS musl target: cargo-zigbuild's `zig cc` wrapper (it filters rustc's
/// arguments) with zig's name for the ABI. OpenWrt's MIPS musl is soft-float, which zig calls
/// `musleabi`; cargo-zigbuild would pass `mips-linux-musl`, for which zig 0.14 has no libc.
/// zig's name for the target: for MIPS `musleabi`, soft-float like Rust's MIPS musl targets
/// (`mips-linux-musl` is hard-float; the two cannot be linked together).
fn zig_target(arch: Arch) -> &'static str {
    match arch {
        Arch::Mips => "mips-linux-musleabi",
        Arch::Mipsel => "mipsel-linux-musleabi",
        Arch::Aarch64 => "aarch64-linux-musl",
    }
}

/// Writes `script` with `text` unless it already holds it; makes it executable.
fn write_script(script: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read_to_string(script).ok().as_deref() != Some(text) {
        if let Some(dir) = script.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(script, text).map_err(|e| e.to_string())?;
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The C compiler for build scripts' C code (ring): `zig cc` for [`zig_target`].
fn zig_cc(arch: Arch, zig: &ZigTools) -> Result<PathBuf, String> {
    let zig_target = zig_target(arch);
    let script = zig.cache.join(format!("zigcc-cc-{zig_target}.sh"));
    let text = format!(
        "#!/bin/sh\nexec \"{}\" zig cc -- -g -fno-sanitize=all -target {zig_target} \"$@\"\n",
        zig.bin.join("cargo-zigbuild").display()
    );
    write_script(&script, &text)?;
    Ok(script)
}

/// The archiver for build scripts' C code: `zig ar`.
fn zig_ar(zig: &ZigTools) -> Result<PathBuf, String> {
    let script = zig.cache.join("zigar.sh");
    let text = format!(
        "#!/bin/sh\nexec \"{}\" zig ar -- \"$@\"\n",
        zig.bin.join("cargo-zigbuild").display()
    );
    write_script(&script, &text)?;
    Ok(script)
}

fn zig_linker(arch: Arch, zig: &ZigTools) -> Result<PathBuf, String> {
    let zig_target = zig_target(arch);
    let script = zig.cache.join(format!("zigcc-{zig_target}.sh"));
    // rustc names its musl start files (crt1.o, ...) bare and adds -nostartfiles; without Rust's
    // self-contained objects for this tier-3 target they do not exist: zig brings its own. The
    // `-L` directories of a prebuilt std that this target does not have are dropped too.
    let text = format!(
        "#!/bin/sh\n\
         L=\n\
         for a do\n\
         \tshift\n\
         \tif [ -n \"$L\" ]; then\n\
         \t\tL=\n\
         \t\t[ -d \"$a\" ] && set -- \"$@\" -L \"$a\"\n\
         \t\tcontinue\n\
         \tfi\n\
         \tcase \"$a\" in\n\
         \tcrt1.o|crti.o|crtbegin.o|crtend.o|crtn.o|-nostartfiles) ;;\n\
         \t-L) L=1 ;;\n\
         \t*) set -- \"$@\" \"$a\" ;;\n\
         \tesac\n\
         done\n\
         exec \"{}\" zig cc -- -g -target {zig_target} \"$@\"\n",
        zig.bin.join("cargo-zigbuild").display()
    );
    write_script(&script, &text)?;
    Ok(script)
}

/// The first `*/suffix` file under `dir` (a few levels deep).
fn find_file(dir: &Path, suffix: &str) -> Option<PathBuf> {
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let candidate = d.join(suffix);
        if candidate.is_file() {
            return Some(candidate);
        }
        if depth < 4 {
            for e in std::fs::read_dir(&d).ok()?.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    None
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// Strips the binary if it still has a symbol table (the release profile normally did it).
fn strip(bin: &Path) -> Result<(), String> {
    if elf::read(bin)?.stripped {
        return Ok(());
    }
    let sysroot = capture(Command::new("rustc").args(["--print", "sysroot"]))?;
    let objcopy = find_file(
        &PathBuf::from(sysroot.trim()).join("lib/rustlib"),
        "bin/rust-objcopy",
    )
    .ok_or("rust-objcopy not found: rustup component add llvm-tools")?;
    util::run(Command::new(objcopy).arg("--strip-all").arg(bin))
}

/// The binary is a static, stripped ELF for the board's architecture.
pub fn check_binary(arch: Arch, bin: &Path) -> Result<elf::ElfInfo, String> {
    let info = elf::read(bin)?;
    let (bits, big_endian, machine) = arch.elf();
    if (info.bits, info.big_endian, info.machine) != (bits, big_endian, machine) {
        return Err(format!(
            "{}: {} is not a {} binary",
            bin.display(),
            info.describe(),
            arch.name()
        ));
    }
    if !info.is_static {
        return Err(format!(
            "{}: dynamically linked; OpenWrt needs a static musl binary",
            bin.display()
        ));
    }
    if !info.stripped {
        return Err(format!("{}: not stripped", bin.display()));
    }
    Ok(info)
}

/// `spind -v` and `spind -c CONF -C` under qemu-user, with the spind.conf the init script would
/// write from the package's UCI defaults. Returns `-v`'s output.
pub fn run_under_qemu(arch: Arch, bin: &Path, work: &Path) -> Result<String, String> {
    let qemu = arch.qemu();
    let version = capture(Command::new(qemu).arg(bin).arg("-v"))?;
    if !version.contains("SPIN daemon version") {
        return Err(format!("{qemu} {} -v printed {version:?}", bin.display()));
    }
    let uci = std::fs::read_to_string(openwrt_dir().join("package/etc/config/spin"))
        .map_err(|e| e.to_string())?;
    let conf = work.join("spind.conf");
    std::fs::write(&conf, spind_conf_from_uci(&uci, "192.168.1.1")).map_err(|e| e.to_string())?;
    let out = Command::new(qemu)
        .arg(bin)
        .arg("-c")
        .arg(&conf)
        .arg("-C")
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stdout.contains("spinweb_interfaces = 127.0.0.1,192.168.1.1") {
        return Err(format!(
            "{qemu} spind -c {} -C failed ({}): {stdout}{stderr}",
            conf.display(),
            out.status
        ));
    }
    if stderr.contains("unknown") || stderr.contains("ignored") {
        return Err(format!(
            "spind warns about the UCI defaults (image/openwrt/package/etc/config/spin): {stderr}"
        ));
    }
    Ok(version)
}

/// What `/etc/init.d/spind` writes to /var/etc/spind.conf (kept in step with its shell code):
/// the options of `config spind` sections except `enabled`, plus `spinweb_interfaces` and
/// `pubsub_host` from the LAN address when unset.
pub fn spind_conf_from_uci(uci: &str, lan: &str) -> String {
    let mut out = String::new();
    let mut in_spind = false;
    let (mut web, mut host) = (false, false);
    for line in uci.lines() {
        let words = shell_words(line);
        match words.first().map(String::as_str) {
            Some("config") => in_spind = words.get(1).map(String::as_str) == Some("spind"),
            Some("option") if in_spind && words.len() >= 2 => {
                let key = &words[1];
                let value = words.get(2).cloned().unwrap_or_default();
                if key == "enabled" {
                    continue;
                }
                web |= key == "spinweb_interfaces";
                host |= key == "pubsub_host";
                out.push_str(&format!("{key} = {value}\n"));
            }
            _ => {}
        }
    }
    if !web {
        out.push_str(&format!("spinweb_interfaces = 127.0.0.1,{lan}\n"));
    }
    if !host {
        out.push_str(&format!("pubsub_host = {lan}\n"));
    }
    out
}

/// Words of a UCI line: bare or '…'/"…" quoted; `#` starts a comment outside quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '#' && !in_word => break,
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

// ---------------------------------------------------------------------------------------------
// Package and overlay

pub fn openwrt_dir() -> PathBuf {
    util::root().join("image/openwrt")
}

/// SOURCE_DATE_EPOCH, else the last commit's time, else 0: fixed mtimes in every archive.
pub fn source_date_epoch() -> u64 {
    if let Some(e) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return e;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(util::root())
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

pub fn spind_version() -> Result<String, String> {
    let toml = std::fs::read_to_string(util::root().join("spind/Cargo.toml"))
        .map_err(|e| e.to_string())?;
    toml.lines()
        .find_map(|l| {
            l.strip_prefix("version = ")
                .map(|v| v.trim_matches('"').to_string())
        })
        .ok_or_else(|| "no version in spind/Cargo.toml".into())
}

/// Copies `from` into `to` recursively, keeping the executable bit and normalising other modes
/// (0755 for executables and directories, 0644 for files).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .map_err(|e| format!("{}: {e}", from.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let src = e.path();
        let dst = to.join(e.file_name());
        let meta = std::fs::metadata(&src).map_err(|e| e.to_string())?;
        if meta.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            copy(&src, &dst)?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The control fields of the spind package.
pub fn control_fields(board: &OpenwrtBoard, version: &str, installed_size: u64) -> ipk::Control {
    vec![
        ("Package", "spind".into()),
        ("Version", format!("{version}-{PKG_RELEASE}")),
        ("Depends", DEPENDS.into()),
        (
            "Source",
            "https://github.com/SIDN/spin (Rust successor: spind/ in this repository)".into(),
        ),
        ("SourceName", "spind".into()),
        ("License", "GPL-2.0-only".into()),
        ("Section", "net".into()),
        (
            "URL",
            "https://www.sidnlabs.nl/en/news-and-blogs/spin".into(),
        ),
        ("Maintainer", "SPIN developers <spin@sidn.nl>".into()),
        ("Architecture", board.package_arch.clone()),
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
pub fn build_ipk(
    board: &OpenwrtBoard,
    spind: &Path,
    work: &Path,
    out: &Path,
    epoch: u64,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let data = work.join("pkg-data");
    let control = work.join("pkg-control");
    ipk::reset_dir(&data)?;
    ipk::reset_dir(&control)?;
    copy_tree(&openwrt_dir().join("package"), &data)?;
    let sbin = data.join("usr/sbin");
    std::fs::create_dir_all(&sbin).map_err(|e| e.to_string())?;
    copy(spind, &sbin.join("spind"))?;
    std::fs::set_permissions(sbin.join("spind"), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    for dir in ["usr", "usr/sbin"] {
        std::fs::set_permissions(data.join(dir), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    // Config stays with the user's edits on upgrade: opkg keeps conffiles that changed.
    std::fs::set_permissions(
        data.join("etc/config/spin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .map_err(|e| e.to_string())?;

    copy_tree(&openwrt_dir().join("control"), &control)?;
    std::fs::write(control.join("conffiles"), "/etc/config/spin\n").map_err(|e| e.to_string())?;
    let version = spind_version()?;
    let size = ipk::installed_size(&data)?;
    std::fs::write(
        control.join("control"),
        ipk::render_control(&control_fields(board, &version, size)),
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(
        control.join("control"),
        std::fs::Permissions::from_mode(0o644),
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(
        control.join("conffiles"),
        std::fs::Permissions::from_mode(0o644),
    )
    .map_err(|e| e.to_string())?;

    let path = out.join(format!(
        "spind_{version}-{PKG_RELEASE}_{}.ipk",
        board.package_arch
    ));
    ipk::build(&data, &control, &work.join("ipk-work"), &path, epoch)?;
    Ok(path)
}

/// Checks a built spind package: archive layout, control fields, files and modes, maintainer
/// scripts, and that the spind inside is a static binary for the board's architecture.
pub fn verify_ipk(board: &OpenwrtBoard, path: &Path, scratch: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |what: String| Err(format!("{}: {what}", path.display()));
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
        ("Architecture", board.package_arch.as_str()),
        ("Section", "net"),
        ("Installed-Size", size.as_str()),
    ];
    for (k, v) in want {
        if info.control.get(k).map(String::as_str) != Some(v) {
            return fail(format!(
                "control field {k} is {:?}, expected {v:?}",
                info.control.get(k)
            ));
        }
    }
    for k in ["Source", "Maintainer", "Description", "License"] {
        if info.control.get(k).is_none_or(|v| v.is_empty()) {
            return fail(format!("control field {k} missing"));
        }
    }
    for m in ["./control", "./conffiles", "./postinst", "./prerm"] {
        if !info.control_members.iter().any(|x| x == m) {
            return fail(format!(
                "control.tar.gz has no {m}: {:?}",
                info.control_members
            ));
        }
    }
    let conffiles =
        std::fs::read_to_string(info.control_path("conffiles")).map_err(|e| e.to_string())?;
    if conffiles != "/etc/config/spin\n" {
        return fail(format!("conffiles is {conffiles:?}"));
    }
    for (script, call) in [("postinst", "default_postinst"), ("prerm", "default_prerm")] {
        let p = info.control_path(script);
        let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
        let mode = std::fs::metadata(&p)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if !text.starts_with("#!/bin/sh") || !text.contains(call) || mode & 0o111 == 0 {
            return fail(format!(
                "{script} must be an executable sh script calling {call}"
            ));
        }
    }
    let files = [
        ("/usr/sbin/spind", 0o755),
        ("/etc/init.d/spind", 0o755),
        ("/etc/config/spin", 0o600),
        ("/etc/uci-defaults/90-spind", 0o755),
        ("/etc/sysctl.d/90-spind.conf", 0o644),
    ];
    for (file, mode) in files {
        if !info.data_members.iter().any(|m| m == &format!(".{file}")) {
            return fail(format!(
                "data.tar.gz has no .{file}: {:?}",
                info.data_members
            ));
        }
        let got = std::fs::metadata(info.data_path(file))
            .map_err(|e| e.to_string())?
            .permissions()
            .mode()
            & 0o777;
        if got != mode {
            return fail(format!("{file} has mode {got:o}, expected {mode:o}"));
        }
    }
    let bin = info.data_path("/usr/sbin/spind");
    check_binary(board.arch, &bin).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// The ImageBuilder's `FILES` directory: `image/openwrt/overlay` (first-boot uci-defaults).
pub fn build_overlay(files: &Path) -> Result<(), String> {
    ipk::reset_dir(files)?;
    copy_tree(&openwrt_dir().join("overlay"), files)
}

// ---------------------------------------------------------------------------------------------
// ImageBuilder

pub fn sha256_file(path: &Path) -> Result<String, String> {
    let out = capture(Command::new("sha256sum").arg(path))?;
    Ok(out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// An unpacked ImageBuilder directory, or `Err(why)` when there is none (not an error: the
/// build then ends with [`missing_message`]). Outer `Err` for a bad one.
pub fn resolve_imagebuilder(
    board: &OpenwrtBoard,
    opts: &ImageOptions,
) -> Result<Result<PathBuf, String>, String> {
    let given = match &opts.imagebuilder {
        Some(p) => Some(p.clone()),
        None => {
            let cached = util::root()
                .join("target/openwrt/dl")
                .join(board.imagebuilder_file());
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
        return Err(format!(
            "--imagebuilder {}: no such file or directory",
            path.display()
        ));
    }
    // A tarball: check it against the pin when it is the pinned file, then unpack once.
    let sha = sha256_file(&path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == board.imagebuilder_file() {
        match &board.imagebuilder_sha256 {
            Some(pin) if *pin == sha => eprintln!("xtask: {name}: sha256 matches {}", board.file),
            Some(pin) => {
                return Err(format!(
                    "{}: sha256 {sha} does not match the pinned {pin} ({}): a damaged or different file",
                    path.display(),
                    board.file
                ))
            }
            None => eprintln!("xtask: warning: {} pins no sha256; using {} as given (sha256 {sha})", board.file, path.display()),
        }
    } else {
        eprintln!(
            "xtask: note: {} is not the pinned {}; using it as given (sha256 {sha})",
            path.display(),
            board.imagebuilder_file()
        );
    }
    let dir = util::root().join("target/openwrt/ib").join(&sha[..16]);
    let stamp = dir.join(".xtask-unpacked");
    if !stamp.exists() {
        ensure_tool("zstd", "zstd", false)?;
        ensure_tool("xz", "xz-utils", false)?;
        ipk::reset_dir(&dir)?;
        eprintln!("xtask: unpacking {} into {}", path.display(), dir.display());
        util::run(
            Command::new("tar")
                .arg("-xf")
                .arg(&path)
                .arg("-C")
                .arg(&dir)
                .arg("--strip-components=1"),
        )?;
        std::fs::write(&stamp, format!("{sha}\n")).map_err(|e| e.to_string())?;
    }
    check_imagebuilder_dir(board, &dir)?;
    Ok(Ok(dir))
}

/// A real ImageBuilder has `.config` naming its target: it must be the board's.
fn check_imagebuilder_dir(board: &OpenwrtBoard, dir: &Path) -> Result<(), String> {
    if !dir.join("Makefile").is_file() {
        return Err(format!(
            "{}: not an OpenWrt ImageBuilder (no Makefile)",
            dir.display()
        ));
    }
    if let Ok(config) = std::fs::read_to_string(dir.join(".config")) {
        let want = format!("CONFIG_TARGET_{}_{}=y", board.target, board.subtarget);
        if !config.lines().any(|l| l.trim() == want) {
            return Err(format!(
                "{}: this ImageBuilder is not for {}/{} (no {want} in .config); {} needs {}",
                dir.display(),
                board.target,
                board.subtarget,
                board.name,
                board.imagebuilder_file()
            ));
        }
    }
    Ok(())
}

/// Downloads the pinned ImageBuilder to `target/openwrt/dl/` and checks its sha256. `Err(why)`
/// when offline; outer `Err` when the download is refused or damaged.
fn download_imagebuilder(board: &OpenwrtBoard) -> Result<Result<PathBuf, String>, String> {
    let Some(pin) = &board.imagebuilder_sha256 else {
        return Ok(Err(format!(
            "{} pins no verified sha256, so xtask does not download {}",
            board.file,
            board.imagebuilder_file()
        )));
    };
    ensure_tool("curl", "curl", false)?;
    let dl = util::root().join("target/openwrt/dl");
    std::fs::create_dir_all(&dl).map_err(|e| e.to_string())?;
    let part = dl.join(format!("{}.part", board.imagebuilder_file()));
    eprintln!("xtask: downloading {}", board.imagebuilder_url);
    let status = Command::new("curl")
        .args([
            "-fL",
            "--connect-timeout",
            "15",
            "--retry",
            "2",
            "--progress-bar",
            "-o",
        ])
        .arg(&part)
        .arg(&board.imagebuilder_url)
        .status()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !status.success() {
        std::fs::remove_file(&part).ok();
        return Ok(Err(format!(
            "downloading it from downloads.openwrt.org failed: curl {status}"
        )));
    }
    let sha = sha256_file(&part)?;
    if sha != *pin {
        std::fs::remove_file(&part).ok();
        return Err(format!(
            "downloaded {} has sha256 {sha}, but {} pins {pin}: refusing to use it",
            board.imagebuilder_url, board.file
        ));
    }
    let done = dl.join(board.imagebuilder_file());
    std::fs::rename(&part, &done).map_err(|e| e.to_string())?;
    Ok(Ok(done))
}

/// The `make image` command line for this board.
pub fn imagebuilder_command(
    board: &OpenwrtBoard,
    ib: &Path,
    ipk: &Path,
    files: &Path,
    bin_dir: &Path,
) -> Command {
    let mut packages: Vec<String> = board.packages.clone();
    packages.push(ipk.display().to_string());
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(ib)
        .arg("image")
        .arg(format!("PROFILE={}", board.profile))
        .arg(format!("PACKAGES={}", packages.join(" ")))
        .arg(format!("FILES={}", files.display()))
        .arg(format!("BIN_DIR={}", bin_dir.display()))
        .arg("EXTRA_IMAGE_NAME=valibox");
    // Not cargo's jobserver or flags: the ImageBuilder runs its own make.
    for var in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CARGO_MAKEFLAGS"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `make image` (unless its inputs are unchanged) and returns the images for the profile.
pub fn run_imagebuilder(
    board: &OpenwrtBoard,
    ib: &Path,
    ipk: &Path,
    files: &Path,
    bin_dir: &Path,
) -> Result<Vec<Artifact>, String> {
    ensure_tool("make", "make", false)?;
    let mut key = format!(
        "{}\n{}\n{}\n{}\n",
        ib.display(),
        board.profile,
        board.packages.join(" "),
        sha256_file(ipk)?
    );
    let listing = capture(
        Command::new("sh")
            .arg("-c")
            .arg("find . -type f | sort | xargs -r sha256sum")
            .current_dir(files),
    )?;
    key.push_str(&listing);
    let stamp = bin_dir.join(".xtask-inputs");
    let fresh = std::fs::read_to_string(&stamp)
        .map(|s| s == key)
        .unwrap_or(false);
    if fresh && !find_images(board, bin_dir).is_empty() {
        eprintln!(
            "xtask: {}: image inputs unchanged, keeping {}",
            board.name,
            bin_dir.display()
        );
    } else {
        ipk::reset_dir(bin_dir)?;
        util::run(&mut imagebuilder_command(board, ib, ipk, files, bin_dir))?;
        std::fs::write(&stamp, key).map_err(|e| e.to_string())?;
    }
    let images = find_images(board, bin_dir);
    if !images.iter().any(|a| a.what.contains("sysupgrade")) {
        return Err(format!(
            "make image finished but {} holds no sysupgrade image for {}",
            bin_dir.display(),
            board.profile
        ));
    }
    Ok(images)
}

fn find_images(board: &OpenwrtBoard, bin_dir: &Path) -> Vec<Artifact> {
    let mut found: Vec<Artifact> =
        std::fs::read_dir(bin_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.contains(&board.profile) || !e.path().is_file() {
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

#[cfg(test)]
mod tests;
