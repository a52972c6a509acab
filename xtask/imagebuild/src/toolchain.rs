//! The Rust side of the host: the targets spind is cross-built for, the pinned nightly for the
//! tier-3 MIPS targets, and the pinned zig + cargo-zigbuild (from PyPI, in a venv under
//! `target/tools/`) that link and compile C for them. Installed on first use (and by `cargo
//! xtask setup`), with rustup.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use runner::cmd;

use crate::board::OpenWrtArch;

/// Nightly used for MIPS (tier 3: std is built from source). Pinned for reproducible builds.
pub const MIPS_NIGHTLY: &str = "nightly-2026-05-20";
/// From PyPI; other zig versions failed to link Rust's MIPS musl std on this host.
pub const ZIG_VERSION: &str = "0.14.1";
pub const CARGO_ZIGBUILD_VERSION: &str = "0.20.1";

/// The host's own Rust target (`rustc -vV`).
pub fn host_target() -> Result<String> {
    let sh = crate::paths::shell()?;
    let v = cmd!(sh, "rustc -vV").read()?;
    v.lines().find_map(|l| l.strip_prefix("host: ")).map(String::from).context("rustc -vV names no host")
}

/// Makes sure the Rust target is installed (rustup); true if it is the host's own target.
pub fn ensure_rust_target(target: &str) -> Result<bool> {
    if host_target()? == target {
        return Ok(true);
    }
    let sh = crate::paths::shell()?;
    let installed = cmd!(sh, "rustup target list --installed").read().with_context(|| {
        format!("the Rust target {target} is needed; install rustup, then: rustup target add {target}")
    })?;
    if !installed.lines().any(|l| l.trim() == target) {
        eprintln!("xtask: adding Rust target {target}");
        cmd!(sh, "rustup target add {target}").run()?;
    }
    Ok(false)
}

/// The pinned nightly with rust-src. A `nightly` toolchain of exactly that date is used as is.
pub fn ensure_nightly() -> Result<String> {
    let sh = crate::paths::shell()?;
    let date = MIPS_NIGHTLY.trim_start_matches("nightly-");
    let toolchains = cmd!(sh, "rustup toolchain list").read()?;
    let home = std::env::var("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".rustup"));
    let channel_date = |tc: &str| -> Option<String> {
        let manifest = home.join("toolchains").join(tc).join("lib/rustlib/multirust-channel-manifest.toml");
        let text = std::fs::read_to_string(manifest).ok()?;
        text.lines().find_map(|l| l.strip_prefix("date = ").map(|d| d.trim_matches('"').to_string()))
    };
    let mut toolchain = None;
    for line in toolchains.lines() {
        let tc = line.split_whitespace().next().unwrap_or("");
        if tc.starts_with(MIPS_NIGHTLY) {
            toolchain = Some(MIPS_NIGHTLY.to_string());
            break;
        }
        if tc.starts_with("nightly-x86_64") && channel_date(tc).as_deref() == Some(date) {
            toolchain = Some("nightly".to_string());
            break;
        }
    }
    let toolchain = match toolchain {
        Some(t) => t,
        None => {
            cmd!(sh, "rustup toolchain install {MIPS_NIGHTLY} --profile minimal --component rust-src").run()?;
            MIPS_NIGHTLY.to_string()
        }
    };
    let components = cmd!(sh, "rustup component list --installed --toolchain {toolchain}").read()?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        cmd!(sh, "rustup component add rust-src --toolchain {toolchain}").run()?;
    }
    Ok(toolchain)
}

/// The pinned zig and cargo-zigbuild.
pub struct ZigTools {
    /// The venv's `bin/` (cargo-zigbuild).
    pub bin: PathBuf,
    pub zig: PathBuf,
    pub cache: PathBuf,
}

/// zig and cargo-zigbuild from PyPI, pinned, in a venv under `target/tools/`.
pub fn ensure_zig_tools() -> Result<ZigTools> {
    let dir = crate::paths::target_dir().join(format!("tools/zig-{ZIG_VERSION}-zigbuild-{CARGO_ZIGBUILD_VERSION}"));
    let bin = dir.join("bin");
    let stamp = dir.join(".installed");
    if !stamp.exists() {
        let sh = crate::paths::shell()?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        if !cmd!(sh, "python3 -m venv {dir}").succeeds()? {
            // Debian's python3 makes venvs only with python3-venv.
            std::fs::remove_dir_all(&dir).ok();
            runner::host::ensure(&[runner::host::Need::OpenWrt])?;
            cmd!(sh, "python3 -m venv {dir}").run()?;
        }
        let pip = bin.join("pip");
        let zig = format!("ziglang=={ZIG_VERSION}");
        let zigbuild = format!("cargo-zigbuild=={CARGO_ZIGBUILD_VERSION}");
        cmd!(sh, "{pip} install -q --disable-pip-version-check {zig} {zigbuild}").run()?;
        std::fs::write(&stamp, format!("{zig}\n{zigbuild}\n"))?;
    }
    let zig = find_file(&dir.join("lib"), "ziglang/zig")
        .with_context(|| format!("no ziglang/zig under {}", dir.display()))?;
    Ok(ZigTools { bin, zig, cache: crate::paths::target_dir().join("tools/zigbuild-cache") })
}

/// zig's name for the target: for MIPS `musleabi`, soft-float like Rust's MIPS musl targets
/// (`mips-linux-musl` is hard-float; the two cannot be linked together, and cargo-zigbuild
/// would pass that one, for which zig 0.14 has no libc).
fn zig_target(arch: OpenWrtArch) -> &'static str {
    match arch {
        OpenWrtArch::Mips => "mips-linux-musleabi",
        OpenWrtArch::Mipsel => "mipsel-linux-musleabi",
        OpenWrtArch::Aarch64 => "aarch64-linux-musl",
    }
}

/// Writes `script` with `text` unless it already holds it; makes it executable.
fn write_script(script: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read_to_string(script).ok().as_deref() != Some(text) {
        if let Some(dir) = script.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(script, text)?;
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

impl ZigTools {
    fn zigbuild(&self) -> String {
        self.bin.join("cargo-zigbuild").display().to_string()
    }

    /// The C compiler for build scripts' C code (ring): `zig cc` for [`zig_target`].
    pub fn cc(&self, arch: OpenWrtArch) -> Result<PathBuf> {
        let zig_target = zig_target(arch);
        let script = self.cache.join(format!("zigcc-cc-{zig_target}.sh"));
        let text = format!(
            "#!/bin/sh\nexec \"{}\" zig cc -- -g -fno-sanitize=all -target {zig_target} \"$@\"\n",
            self.zigbuild()
        );
        write_script(&script, &text)?;
        Ok(script)
    }

    /// The archiver for build scripts' C code: `zig ar`.
    pub fn ar(&self) -> Result<PathBuf> {
        let script = self.cache.join("zigar.sh");
        write_script(&script, &format!("#!/bin/sh\nexec \"{}\" zig ar -- \"$@\"\n", self.zigbuild()))?;
        Ok(script)
    }

    /// The linker for a MIPS musl target: cargo-zigbuild's `zig cc` wrapper (it filters rustc's
    /// arguments) with zig's name for the ABI.
    pub fn linker(&self, arch: OpenWrtArch) -> Result<PathBuf> {
        let zig_target = zig_target(arch);
        let script = self.cache.join(format!("zigcc-{zig_target}.sh"));
        // rustc names its musl start files (crt1.o, ...) bare and adds -nostartfiles; without
        // Rust's self-contained objects for this tier-3 target they do not exist: zig brings its
        // own. The `-L` directories of a prebuilt std that this target does not have are dropped.
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
            self.zigbuild()
        );
        write_script(&script, &text)?;
        Ok(script)
    }
}

/// The first `*/suffix` file under `dir` (a few levels deep).
pub fn find_file(dir: &Path, suffix: &str) -> Option<PathBuf> {
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

/// The C cross compiler a foreign glibc/musl aarch64 target needs on another host: spind's
/// dependency tree has C and assembly (psm, under rumqttd's config parser) that cc-rs compiles
/// for the target. Debian's aarch64-linux-gnu-gcc compiles that freestanding code fine for a
/// static musl link too. (program, Debian package)
pub fn cross_cc(rust_target: &str) -> Option<(&'static str, &'static str)> {
    if std::env::consts::ARCH == "aarch64" {
        return None;
    }
    rust_target.starts_with("aarch64-").then_some(("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"))
}

/// rustup itself: the targets and toolchains come from it.
pub fn require_rustup() -> Result<()> {
    if !runner::host::have("rustup") {
        bail!("missing rustup: install it from https://rustup.rs (xtask adds targets and toolchains with it)");
    }
    Ok(())
}

/// Everything Rust the layers of `cargo xtask test` need: the images' and OpenWrt boards'
/// targets, the MIPS nightly with rust-src, zig (`cargo xtask setup`).
pub fn ensure_all(targets: &[&str]) -> Result<()> {
    require_rustup()?;
    for t in targets {
        ensure_rust_target(t)?;
    }
    ensure_nightly()?;
    ensure_zig_tools()?;
    Ok(())
}

/// rustup components of the default toolchain (`rustfmt`, `clippy` for the gates).
pub fn ensure_components(components: &[&str]) -> Result<()> {
    let sh = crate::paths::shell()?;
    let installed = cmd!(sh, "rustup component list --installed").read()?;
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|c| !installed.lines().any(|l| l.starts_with(&format!("{c}-")) || l == *c))
        .collect();
    if !missing.is_empty() {
        cmd!(sh, "rustup component add {missing...}").run()?;
    }
    Ok(())
}
