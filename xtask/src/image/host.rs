//! Host tools for image builds: checked up front; as root on Debian they are installed (with the
//! bookworm-backports apt source for e2fsprogs >= 1.47.1 and QEMU 10), and binfmt_misc is
//! registered for foreign architectures. Otherwise the error names each missing tool and the
//! exact command that installs it.

use std::path::Path;
use std::process::Command;

use super::board::Board;
use crate::util;

/// A tool: the program looked up in PATH, the Debian package, whether it must come from backports.
struct Tool {
    program: &'static str,
    package: &'static str,
    backports: bool,
}

const fn t(program: &'static str, package: &'static str, backports: bool) -> Tool {
    Tool {
        program,
        package,
        backports,
    }
}

const COMMON: &[Tool] = &[
    t("mmdebstrap", "mmdebstrap", false),
    t("sfdisk", "fdisk", false),
    t("mkfs.fat", "dosfstools", false),
    t("mcopy", "mtools", false),
    t("tar", "tar", false),
    t("bsdtar", "libarchive-tools", false),
    t("xz", "xz-utils", false),
    t("qemu-img", "qemu-utils", false),
    t("sha256sum", "coreutils", false),
    // mkfs.ext4 -d rootfs.tar needs e2fsprogs >= 1.47.1 (bookworm has 1.47.0) and libarchive.
    t("mkfs.ext4", "e2fsprogs", true),
    t("debugfs", "e2fsprogs", true),
];
const FOREIGN: &[Tool] = &[
    t("qemu-aarch64-static", "qemu-user-static", true),
    t("arch-test", "arch-test", false),
];

pub const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";
const BACKPORTS_TEXT: &str = "\
# Added by cargo xtask (spin): e2fsprogs >= 1.47.1 and QEMU 10 for image builds and tests.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

pub fn have(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .any(|d| {
            let p = d.join(program);
            p.metadata().map(|m| m.is_file()).unwrap_or(false)
        })
}

/// e2fsprogs' version as (major, minor, patch), from `mke2fs -V`.
fn e2fs_version() -> Option<(u32, u32, u32)> {
    let o = Command::new("mke2fs").arg("-V").output().ok()?;
    let text =
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    let v = text.split_whitespace().nth(1)?;
    let mut it = v.split('.').map(|x| {
        x.trim_matches(|c: char| !c.is_ascii_digit())
            .parse::<u32>()
            .unwrap_or(0)
    });
    Some((it.next()?, it.next().unwrap_or(0), it.next().unwrap_or(0)))
}

fn libarchive_present() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/libarchive.so.13",
        "/usr/lib/aarch64-linux-gnu/libarchive.so.13",
        "/usr/lib/libarchive.so.13",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

/// What is missing for this board: (package, from backports, why).
fn missing(board: &Board) -> Vec<(&'static str, bool, String)> {
    let mut m = Vec::new();
    let tools = COMMON
        .iter()
        .chain(if board.is_foreign() { FOREIGN } else { &[] });
    for tool in tools {
        if !have(tool.program) {
            m.push((
                tool.package,
                tool.backports,
                format!("{} (package {})", tool.program, tool.package),
            ));
        }
    }
    if let Some((program, package)) = cross_cc(&board.rust_target) {
        if !have(program) {
            m.push((
                package,
                false,
                format!("{program} (package {package}, C for {})", board.rust_target),
            ));
        }
    }
    if have("mke2fs") {
        match e2fs_version() {
            Some(v) if v >= (1, 47, 1) => {}
            v => m.push((
                "e2fsprogs",
                true,
                format!("e2fsprogs >= 1.47.1 for mkfs.ext4 -d TAR (have {v:?})"),
            )),
        }
    }
    if !libarchive_present() {
        m.push((
            "libarchive13",
            false,
            "libarchive13 (mkfs.ext4 -d TAR loads it)".into(),
        ));
    }
    m.dedup_by(|a, b| a.0 == b.0);
    m
}

/// The C cross compiler a foreign Rust target needs: spind's dependency tree has C and assembly
/// (psm, under rumqttd's config parser) that cc-rs compiles for the target. Debian's
/// aarch64-linux-gnu-gcc compiles that freestanding code fine for a static musl link too.
pub fn cross_cc(rust_target: &str) -> Option<(&'static str, &'static str)> {
    if std::env::consts::ARCH == "aarch64" {
        return None;
    }
    rust_target
        .starts_with("aarch64-")
        .then_some(("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"))
}

fn is_debian() -> bool {
    Path::new("/etc/debian_version").exists() && have("apt-get")
}

fn backports_configured() -> bool {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts.iter().any(|t| {
        t.lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("bookworm-backports"))
    })
}

/// The commands that install `pkgs` (regular and backports) on Debian 12.
pub fn install_commands(regular: &[&str], backports: &[&str]) -> Vec<String> {
    let mut c = Vec::new();
    if !backports.is_empty() && !backports_configured() {
        c.push(format!(
            "printf '{}' > {BACKPORTS_SOURCE}",
            BACKPORTS_TEXT.replace('\n', "\\n")
        ));
    }
    c.push("apt-get update".into());
    if !regular.is_empty() {
        c.push(format!(
            "apt-get install -y --no-install-recommends {}",
            regular.join(" ")
        ));
    }
    if !backports.is_empty() {
        c.push(format!(
            "apt-get install -y --no-install-recommends -t bookworm-backports {}",
            backports.join(" ")
        ));
    }
    c
}

/// Installs Debian packages (root only): adds the backports source when needed.
pub fn apt_install(regular: &[&str], backports: &[&str]) -> Result<(), String> {
    if !backports.is_empty() && !backports_configured() {
        eprintln!("xtask: adding the bookworm-backports apt source ({BACKPORTS_SOURCE})");
        std::fs::write(BACKPORTS_SOURCE, BACKPORTS_TEXT)
            .map_err(|e| format!("cannot write {BACKPORTS_SOURCE}: {e}"))?;
    }
    let apt = |extra: &[&str], pkgs: &[&str]| -> Result<(), String> {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
        ]);
        c.args(extra).args(pkgs);
        util::run(&mut c)
    };
    util::run(Command::new("apt-get").args(["update", "-q"]))?;
    if !regular.is_empty() {
        apt(&[], regular)?;
    }
    if !backports.is_empty() {
        apt(&["-t", "bookworm-backports"], backports)?;
    }
    Ok(())
}

/// Checks (and as root on Debian installs) what building `board` needs; registers binfmt.
pub fn ensure_for(board: &Board) -> Result<(), String> {
    let m = missing(board);
    if !m.is_empty() {
        let regular: Vec<&str> = m.iter().filter(|x| !x.1).map(|x| x.0).collect();
        let backports: Vec<&str> = m.iter().filter(|x| x.1).map(|x| x.0).collect();
        let what: Vec<String> = m.iter().map(|x| x.2.clone()).collect();
        if util::is_root() && is_debian() {
            eprintln!(
                "xtask image: installing missing host tools: {}",
                what.join(", ")
            );
            apt_install(&regular, &backports)?;
            let still = missing(board);
            if !still.is_empty() {
                return Err(format!(
                    "still missing after installing: {}",
                    still
                        .iter()
                        .map(|x| x.2.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        } else {
            return Err(format!(
                "missing host tools: {}\ninstall them (as root, Debian 12) with:\n  {}",
                what.join(", "),
                install_commands(&regular, &backports).join("\n  ")
            ));
        }
    }
    if board.is_foreign() {
        ensure_binfmt(&qemu_name(&board.arch))?;
    }
    Ok(())
}

fn qemu_name(debian_arch: &str) -> String {
    match debian_arch {
        "arm64" => "aarch64",
        "armhf" | "armel" => "arm",
        other => other,
    }
    .to_string()
}

/// Registers qemu-user for `arch` with binfmt_misc (this host's PID 1 is not systemd, so nothing
/// does it at boot). Idempotent.
pub fn ensure_binfmt(arch: &str) -> Result<(), String> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let entry = dir.join(format!("qemu-{arch}"));
    if entry.exists() {
        return Ok(());
    }
    if !util::is_root() {
        return Err(format!(
            "binfmt_misc has no qemu-{arch} entry: as root run\n  mount -t binfmt_misc binfmt_misc {0} 2>/dev/null; \
             cat /usr/lib/binfmt.d/qemu-{arch}.conf > {0}/register",
            dir.display()
        ));
    }
    if !dir.join("register").exists() {
        util::run(
            Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc"])
                .arg(dir),
        )?;
    }
    let conf = format!("/usr/lib/binfmt.d/qemu-{arch}.conf");
    let rule = std::fs::read_to_string(&conf)
        .map_err(|e| format!("cannot read {conf} (qemu-user-static): {e}"))?;
    std::fs::write(dir.join("register"), rule.trim_end())
        .map_err(|e| format!("cannot register {conf} with binfmt_misc: {e}"))?;
    eprintln!("xtask image: registered qemu-{arch} with binfmt_misc");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_commands_use_backports_for_backports_packages() {
        let c = install_commands(&["mtools"], &["e2fsprogs"]);
        assert!(c
            .iter()
            .any(|l| l == "apt-get install -y --no-install-recommends mtools"));
        assert!(c
            .iter()
            .any(|l| l
                == "apt-get install -y --no-install-recommends -t bookworm-backports e2fsprogs"));
    }
}
