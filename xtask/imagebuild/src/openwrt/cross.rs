//! Cross-build: spind as a static musl binary for the board's CPU (aarch64: stable + rust-lld;
//! mips: the pinned nightly `-Zbuild-std` with cargo-zigbuild; both compile C code (ring's) with
//! the pinned zig, for MIPS soft-float like Rust's targets), stripped, checked (ELF header) and
//! run under qemu-user with the settings the package's init script would write.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use runner::cmd;

use crate::board::OpenWrtArch;
use crate::elf;
use crate::toolchain::{self, find_file};

/// Cross-builds spind (release profile: LTO, opt-level s, panic abort, strip) and returns the path.
pub fn cross_build(arch: OpenWrtArch) -> Result<PathBuf> {
    let target = arch.rust_target();
    let sh = crate::paths::shell()?;
    let common = ["--release", "--locked", "-p", "spind", "--bin", "spind", "--target", target];
    let zig = toolchain::ensure_zig_tools()?;
    if arch.needs_build_std() {
        let toolchain = toolchain::ensure_nightly()?;
        let env_target = target.to_uppercase().replace('-', "_");
        let path = format!("{}:{}", zig.bin.display(), std::env::var("PATH").unwrap_or_default());
        cmd!(sh, "rustup run {toolchain} cargo zigbuild -Zbuild-std=std,panic_abort {common...}")
            // cargo-zigbuild runs $CARGO if set: it must be the nightly cargo rustup run provides.
            .env_remove("CARGO")
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC_WRAPPER")
            .env("PATH", path)
            .env("CARGO_ZIGBUILD_ZIG_PATH", &zig.zig)
            .env("CARGO_ZIGBUILD_CACHE_DIR", &zig.cache)
            // OpenWrt runs static binaries without caring about its libc version; the Rust MIPS
            // musl targets default to dynamic linking.
            .env(format!("CARGO_TARGET_{env_target}_RUSTFLAGS"), "-C target-feature=+crt-static")
            // cargo-zigbuild keeps a linker that is already set.
            .env(format!("CARGO_TARGET_{env_target}_LINKER"), zig.linker(arch)?)
            // And a C compiler: its own one targets mips-linux-musl, hard-float, whose objects
            // (ring's) cannot be linked with Rust's soft-float MIPS code.
            .env(format!("CC_{}", target.replace('-', "_")), zig.cc(arch)?)
            .run()?;
    } else {
        toolchain::ensure_rust_target(target)?;
        // ring (rustls) has C and assembly: compiled by zig cc, so no cross gcc is needed.
        let env_target = target.replace('-', "_");
        let cargo = crate::paths::cargo();
        cmd!(sh, "{cargo} build {common...}")
            // Static musl with the linker that ships with Rust.
            .env(format!("CARGO_TARGET_{}_LINKER", env_target.to_uppercase()), "rust-lld")
            .env("CARGO_ZIGBUILD_ZIG_PATH", &zig.zig)
            .env("CARGO_ZIGBUILD_CACHE_DIR", &zig.cache)
            .env(format!("CC_{env_target}"), zig.cc(arch)?)
            .env(format!("AR_{env_target}"), zig.ar()?)
            .run()?;
    }
    let bin = crate::paths::target_dir().join(target).join("release/spind");
    if !bin.exists() {
        return Err(anyhow!("the build succeeded but {} is missing", bin.display()));
    }
    Ok(bin)
}

/// Strips the binary if it still has a symbol table (the release profile normally did it).
pub fn strip(bin: &Path) -> Result<()> {
    if elf::read(bin)?.stripped {
        return Ok(());
    }
    let sh = crate::paths::shell()?;
    let sysroot = cmd!(sh, "rustc --print sysroot").read()?;
    let objcopy = find_file(&PathBuf::from(sysroot.trim()).join("lib/rustlib"), "bin/rust-objcopy")
        .context("rust-objcopy not found: rustup component add llvm-tools")?;
    Ok(cmd!(sh, "{objcopy} --strip-all {bin}").run()?)
}

/// The binary is a static, stripped ELF for the board's architecture.
pub fn check_binary(arch: OpenWrtArch, bin: &Path) -> Result<elf::ElfInfo> {
    let info = elf::read(bin)?;
    let (bits, big_endian, machine) = arch.elf();
    if (info.bits, info.big_endian, info.machine) != (bits, big_endian, machine) {
        return Err(anyhow!("{}: {} is not a {} binary", bin.display(), info.describe(), arch.as_str()));
    }
    if !info.is_static {
        return Err(anyhow!("{}: dynamically linked; OpenWrt needs a static musl binary", bin.display()));
    }
    if !info.stripped {
        return Err(anyhow!("{}: not stripped", bin.display()));
    }
    Ok(info)
}

/// `spind -v` and `spind -c CONF -C` under qemu-user, with the spind.conf the init script would
/// write from the package's UCI defaults. Returns `-v`'s output.
pub fn run_under_qemu(arch: OpenWrtArch, bin: &Path, work: &Path) -> Result<String> {
    let qemu = arch.qemu();
    let sh = crate::paths::shell()?;
    let version = cmd!(sh, "{qemu} {bin} -v").read()?;
    if !version.contains("SPIN daemon version") {
        return Err(anyhow!("{qemu} {} -v printed {version:?}", bin.display()));
    }
    let uci = std::fs::read_to_string(super::package::openwrt_dir().join("package/etc/config/spin"))?;
    let conf = work.join("spind.conf");
    std::fs::write(&conf, spind_conf_from_uci(&uci, "192.168.1.1"))?;
    let out = cmd!(sh, "{qemu} {bin} -c {conf} -C").output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stdout.contains("spinweb_interfaces = 127.0.0.1,192.168.1.1") {
        return Err(anyhow!("{qemu} spind -c {} -C failed ({}): {stdout}{stderr}", conf.display(), out.status));
    }
    if stderr.contains("unknown") || stderr.contains("ignored") {
        return Err(anyhow!("spind warns about the UCI defaults (image/openwrt/package/etc/config/spin): {stderr}"));
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
