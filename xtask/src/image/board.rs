//! Board files: `board-configs/NAME.toml`, everything board-specific about an image.
//!
//! Adding a board is adding a file. The format (every key below; `deny_unknown_fields`, so a typo
//! is an error naming the key):
//!
//! ```toml
//! description = "PC, QEMU and VirtualBox"      # one line, shown by `cargo xtask image --list`
//! base = "debian"                              # debian | openwrt
//! release = "bookworm"                         # debian: a Debian suite; openwrt: a version "24.10.0"
//! arch = "amd64"                               # debian: amd64 | arm64; openwrt: the package arch
//! rust_target = "x86_64-unknown-linux-gnu"     # what spind is built for (must match arch)
//! outputs = ["img.xz", "qcow2", "ova"]         # debian: img.xz qcow2 ova; openwrt: ipk overlay sysupgrade
//!
//! [network]
//! wan = "eth0"                                 # upstream interface (DHCP client)
//! lan = ["eth1"]                               # ports bridged into br-lan (192.168.8.1/24)
//!
//! [kernel]                                     # debian only
//! consoles = ["tty0", "ttyS0,115200"]          # console= in order; the last one is /dev/console
//! cmdline = "net.ifnames=0"                    # further arguments (root= is added by the builder)
//! initramfs_modules = ["ext4", "virtio_blk"]   # MODULES=list: only these (and dependencies)
//!
//! [debian]                                     # debian only
//! mirror = "http://deb.debian.org/debian"
//! components = ["main"]
//! packages = ["linux-image-amd64", "systemd-sysv"]
//! path_exclude = ["/usr/share/man/*"]          # dpkg --path-exclude globs (never unpacked)
//! path_include = ["/usr/share/doc/*/copyright"] # dpkg --path-include: exceptions to the above
//!
//! [disk]                                       # debian only
//! table = "gpt"                                # gpt | mbr
//! bootloader = "syslinux+systemd-boot"         # syslinux+systemd-boot (gpt) | raspi-firmware (mbr)
//! [[disk.partitions]]                          # in disk order; the root partition is the last
//! role = "boot"                                # boot | root
//! label = "SPINBOOT"                           # file system label
//! fs = "vfat"                                  # vfat | ext4
//! size_mib = 128
//!
//! [openwrt]                                    # openwrt only
//! profile = "glinet_gl-mt3000"
//! target = "mediatek"
//! subtarget = "filogic"
//! imagebuilder_url = "https://downloads.openwrt.org/..."
//! imagebuilder_sha256 = "..."
//! packages = ["kmod-nft-queue"]
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A board file as written (structure only; [`Board::validate`] checks the values).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// The file's stem (`x86_64` for `board-configs/x86_64.toml`); not written in the file.
    #[serde(skip)]
    pub name: String,
    /// Where it was read from (for error messages).
    #[serde(skip)]
    pub file: PathBuf,
    pub description: String,
    pub base: String,
    pub release: String,
    pub arch: String,
    pub rust_target: String,
    pub outputs: Vec<String>,
    pub network: Network,
    pub kernel: Option<Kernel>,
    pub debian: Option<Debian>,
    pub disk: Option<Disk>,
    pub openwrt: Option<OpenWrt>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub wan: String,
    pub lan: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    pub consoles: Vec<String>,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default)]
    pub initramfs_modules: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debian {
    #[serde(default = "default_mirror")]
    pub mirror: String,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    pub packages: Vec<String>,
    #[serde(default)]
    pub path_exclude: Vec<String>,
    #[serde(default)]
    pub path_include: Vec<String>,
}

fn default_mirror() -> String {
    "http://deb.debian.org/debian".into()
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub table: String,
    pub bootloader: String,
    pub partitions: Vec<Partition>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub role: String,
    pub label: String,
    pub fs: String,
    pub size_mib: u64,
}

/// OpenWrt ImageBuilder settings (the OpenWrt boards; shared format with the OpenWrt builder).
#[allow(dead_code)] // read by the OpenWrt image builder
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenWrt {
    pub profile: Option<String>,
    pub target: Option<String>,
    pub subtarget: Option<String>,
    pub imagebuilder_url: Option<String>,
    pub imagebuilder_sha256: Option<String>,
    #[serde(default)]
    pub packages: Vec<String>,
}

/// A board file that cannot be used: which file, which field, what is wrong and what is allowed.
#[derive(Debug, PartialEq)]
pub struct BoardError {
    pub file: PathBuf,
    /// Dotted path of the field (`disk.partitions[1].fs`), or "" for the file as a whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: field `{}`: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

pub const BASES: &[&str] = &["debian", "openwrt"];
pub const DEBIAN_ARCHES: &[&str] = &["amd64", "arm64"];
pub const DEBIAN_OUTPUTS: &[&str] = &["img.xz", "qcow2", "ova"];
pub const OPENWRT_OUTPUTS: &[&str] = &["ipk", "overlay", "sysupgrade"];
pub const TABLES: &[&str] = &["gpt", "mbr"];
pub const BOOTLOADERS: &[&str] = &["syslinux+systemd-boot", "raspi-firmware"];
pub const ROLES: &[&str] = &["boot", "root"];
pub const FILESYSTEMS: &[&str] = &["vfat", "ext4"];

/// Where board files live.
pub fn dir() -> PathBuf {
    crate::util::root().join("board-configs")
}

/// Names of all boards (file stems), sorted.
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(String::from))?
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Reads and validates `board-configs/NAME.toml`.
pub fn load(name: &str) -> Result<Board, String> {
    let file = dir().join(format!("{name}.toml"));
    if !file.exists() {
        return Err(format!(
            "no board {name:?}: {} does not exist (boards: {})",
            file.display(),
            names().join(", ")
        ));
    }
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    parse(&file, &text).map_err(|e| e.to_string())
}

/// Parses and validates a board file's text; `file` names it in errors and gives the board name.
pub fn parse(file: &Path, text: &str) -> Result<Board, BoardError> {
    let mut board: Board = toml::from_str(text).map_err(|e| {
        // toml's message names the key (unknown field / missing field / wrong type) and the line.
        BoardError {
            file: file.to_path_buf(),
            field: String::new(),
            message: e.to_string().trim_end().replace('\n', "\n    "),
        }
    })?;
    board.name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    board.file = file.to_path_buf();
    board.validate()?;
    Ok(board)
}

impl Board {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> BoardError {
        BoardError {
            file: self.file.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn one_of(&self, field: &str, value: &str, allowed: &[&str]) -> Result<(), BoardError> {
        if allowed.contains(&value) {
            Ok(())
        } else {
            Err(self.err(
                field,
                format!("{value:?} is not allowed; allowed: {}", allowed.join(", ")),
            ))
        }
    }

    /// Checks every value; the first problem is returned.
    pub fn validate(&self) -> Result<(), BoardError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.err(
                "",
                "the file name must be NAME.toml with NAME made of letters, digits, - and _",
            ));
        }
        if self.description.trim().is_empty() || self.description.contains('\n') {
            return Err(self.err("description", "must be one non-empty line"));
        }
        self.one_of("base", &self.base, BASES)?;
        if self.release.trim().is_empty() {
            return Err(self.err("release", "must not be empty (debian: a suite such as bookworm; openwrt: a version such as 24.10.0)"));
        }
        self.validate_target()?;
        let allowed_outputs = if self.base == "debian" {
            DEBIAN_OUTPUTS
        } else {
            OPENWRT_OUTPUTS
        };
        if self.outputs.is_empty() {
            return Err(self.err(
                "outputs",
                format!("must list at least one of: {}", allowed_outputs.join(", ")),
            ));
        }
        for (i, o) in self.outputs.iter().enumerate() {
            self.one_of(&format!("outputs[{i}]"), o, allowed_outputs)?;
        }
        self.validate_network()?;
        match self.base.as_str() {
            "debian" => self.validate_debian(),
            _ => self.validate_openwrt(),
        }
    }

    fn validate_target(&self) -> Result<(), BoardError> {
        let t = &self.rust_target;
        if t.split('-').count() < 3
            || t.chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(self.err(
                "rust_target",
                format!("{t:?} is not a Rust target triple (such as aarch64-unknown-linux-musl)"),
            ));
        }
        if !t.contains("-linux-") {
            return Err(self.err(
                "rust_target",
                format!("{t:?}: spind runs on Linux; the target must be a *-linux-* triple"),
            ));
        }
        if self.base == "debian" {
            self.one_of("arch", &self.arch, DEBIAN_ARCHES)?;
            let cpu = match self.arch.as_str() {
                "amd64" => "x86_64",
                _ => "aarch64",
            };
            if !t.starts_with(&format!("{cpu}-")) {
                return Err(self.err(
                    "rust_target",
                    format!("{t:?} does not fit arch {:?}: allowed: {cpu}-unknown-linux-gnu or {cpu}-unknown-linux-musl", self.arch),
                ));
            }
        } else if self.arch.trim().is_empty() {
            return Err(self.err(
                "arch",
                "must name the OpenWrt package architecture (such as aarch64_cortex-a53)",
            ));
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), BoardError> {
        let ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 15
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        const WHAT: &str = "an interface name of 1-15 letters, digits, '-', '_' or '.'";
        if !ok(&self.network.wan) {
            return Err(self.err(
                "network.wan",
                format!("{:?} is not {WHAT}", self.network.wan),
            ));
        }
        if self.network.lan.is_empty() {
            return Err(self.err("network.lan", "must list at least one LAN port"));
        }
        for (i, l) in self.network.lan.iter().enumerate() {
            if !ok(l) {
                return Err(self.err(format!("network.lan[{i}]"), format!("{l:?} is not {WHAT}")));
            }
            if *l == self.network.wan {
                return Err(self.err(
                    format!("network.lan[{i}]"),
                    format!("{l:?} is also the WAN interface"),
                ));
            }
            if l == "br-lan" {
                return Err(self.err(
                    format!("network.lan[{i}]"),
                    "br-lan is the LAN bridge itself; list its ports",
                ));
            }
        }
        Ok(())
    }

    fn validate_debian(&self) -> Result<(), BoardError> {
        let kernel = self
            .kernel
            .as_ref()
            .ok_or_else(|| self.err("kernel", "missing: a debian board needs a [kernel] table"))?;
        let debian = self
            .debian
            .as_ref()
            .ok_or_else(|| self.err("debian", "missing: a debian board needs a [debian] table"))?;
        let disk = self
            .disk
            .as_ref()
            .ok_or_else(|| self.err("disk", "missing: a debian board needs a [disk] table"))?;
        if self.openwrt.is_some() {
            return Err(self.err("openwrt", "only allowed with base = \"openwrt\""));
        }
        if !self
            .release
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-')
        {
            return Err(self.err(
                "release",
                format!(
                    "{:?} is not a Debian suite name (such as bookworm)",
                    self.release
                ),
            ));
        }
        // kernel
        if kernel.consoles.is_empty() {
            return Err(self.err(
                "kernel.consoles",
                "must list at least one console (such as ttyS0,115200)",
            ));
        }
        for (i, c) in kernel.consoles.iter().enumerate() {
            let dev = c.split(',').next().unwrap_or("");
            if !(dev.starts_with("tty") && dev.len() > 3) || c.contains(char::is_whitespace) {
                return Err(self.err(format!("kernel.consoles[{i}]"), format!("{c:?} is not a console: allowed: ttyNAME[,BAUD] such as tty0 or ttyS0,115200")));
            }
        }
        for word in kernel.cmdline.split_whitespace() {
            for forbidden in ["root=", "console="] {
                if word.starts_with(forbidden) {
                    return Err(self.err("kernel.cmdline", format!("{word:?}: {forbidden} is set by the builder (use kernel.consoles for consoles)")));
                }
            }
        }
        for (i, m) in kernel.initramfs_modules.iter().enumerate() {
            if m.is_empty()
                || !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(self.err(
                    format!("kernel.initramfs_modules[{i}]"),
                    format!("{m:?} is not a module name"),
                ));
            }
        }
        // debian
        if !(debian.mirror.starts_with("http://")
            || debian.mirror.starts_with("https://")
            || debian.mirror.starts_with("file:/"))
        {
            return Err(self.err(
                "debian.mirror",
                format!(
                    "{:?}: allowed: an http://, https:// or file:/ URL",
                    debian.mirror
                ),
            ));
        }
        for (i, c) in debian.components.iter().enumerate() {
            self.one_of(
                &format!("debian.components[{i}]"),
                c,
                &["main", "contrib", "non-free", "non-free-firmware"],
            )?;
        }
        if debian.packages.is_empty() {
            return Err(self.err("debian.packages", "must list the packages of the image"));
        }
        for (i, p) in debian.packages.iter().enumerate() {
            let ok = p.len() >= 2
                && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            if !ok {
                return Err(self.err(
                    format!("debian.packages[{i}]"),
                    format!("{p:?} is not a Debian package name"),
                ));
            }
        }
        let kernel_pkg = format!("linux-image-{}", self.arch);
        if !debian.packages.contains(&kernel_pkg) {
            return Err(self.err(
                "debian.packages",
                format!("must contain the kernel ({kernel_pkg})"),
            ));
        }
        for (field, globs) in [
            ("debian.path_exclude", &debian.path_exclude),
            ("debian.path_include", &debian.path_include),
        ] {
            for (i, g) in globs.iter().enumerate() {
                if !g.starts_with('/') || g.contains(char::is_whitespace) {
                    return Err(self.err(
                        format!("{field}[{i}]"),
                        format!("{g:?}: allowed: an absolute path glob without spaces"),
                    ));
                }
            }
        }
        // disk
        self.one_of("disk.table", &disk.table, TABLES)?;
        self.one_of("disk.bootloader", &disk.bootloader, BOOTLOADERS)?;
        let table_for_loader = if disk.bootloader == "raspi-firmware" {
            "mbr"
        } else {
            "gpt"
        };
        if disk.table != table_for_loader {
            return Err(self.err(
                "disk.table",
                format!(
                    "bootloader {:?} needs table = {table_for_loader:?}",
                    disk.bootloader
                ),
            ));
        }
        if disk.partitions.len() != 2 {
            return Err(self.err("disk.partitions", "allowed: exactly two partitions, role = \"boot\" (vfat) then role = \"root\" (ext4)"));
        }
        for (i, p) in disk.partitions.iter().enumerate() {
            let f = |k: &str| format!("disk.partitions[{i}].{k}");
            self.one_of(&f("role"), &p.role, ROLES)?;
            self.one_of(&f("fs"), &p.fs, FILESYSTEMS)?;
            let (want_role, want_fs) = if i == 0 {
                ("boot", "vfat")
            } else {
                ("root", "ext4")
            };
            if p.role != want_role {
                return Err(self.err(f("role"), format!("partition {} must be role = {want_role:?} (boot first, root last so it can grow)", i + 1)));
            }
            if p.fs != want_fs {
                return Err(self.err(
                    f("fs"),
                    format!("the {want_role} partition must be fs = {want_fs:?}"),
                ));
            }
            let (max_len, upper) = if p.fs == "vfat" {
                (11, true)
            } else {
                (16, false)
            };
            let label_ok = !p.label.is_empty()
                && p.label.len() <= max_len
                && p.label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && (!upper || !p.label.chars().any(|c| c.is_ascii_lowercase()));
            if !label_ok {
                let what = if upper {
                    "1-11 upper-case letters, digits, '_' or '-'"
                } else {
                    "1-16 letters, digits, '_' or '-'"
                };
                return Err(self.err(
                    f("label"),
                    format!("{:?}: allowed for {}: {what}", p.label, p.fs),
                ));
            }
            let min = if p.fs == "vfat" { 64 } else { 256 };
            if p.size_mib < min || p.size_mib > 64 * 1024 {
                return Err(self.err(
                    f("size_mib"),
                    format!("{}: allowed for {}: {min}..=65536", p.size_mib, p.fs),
                ));
            }
        }
        for o in &self.outputs {
            if o == "ova" && self.arch != "amd64" {
                return Err(self.err(
                    "outputs",
                    "ova (VirtualBox) is only allowed for arch = \"amd64\"",
                ));
            }
        }
        Ok(())
    }

    fn validate_openwrt(&self) -> Result<(), BoardError> {
        for (field, present) in [
            ("kernel", self.kernel.is_some()),
            ("debian", self.debian.is_some()),
            ("disk", self.disk.is_some()),
        ] {
            if present {
                return Err(self.err(field, "only allowed with base = \"debian\""));
            }
        }
        let o = self.openwrt.as_ref().ok_or_else(|| {
            self.err(
                "openwrt",
                "missing: an openwrt board needs an [openwrt] table",
            )
        })?;
        if o.profile.as_deref().unwrap_or("").is_empty() {
            return Err(self.err(
                "openwrt.profile",
                "missing: the ImageBuilder PROFILE (such as glinet_gl-mt3000)",
            ));
        }
        if let Some(sha) = &o.imagebuilder_sha256 {
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(self.err(
                    "openwrt.imagebuilder_sha256",
                    "allowed: 64 hexadecimal digits",
                ));
            }
        }
        if o.imagebuilder_url.is_some() != o.imagebuilder_sha256.is_some() {
            return Err(self.err(
                "openwrt.imagebuilder_sha256",
                "imagebuilder_url and imagebuilder_sha256 go together",
            ));
        }
        Ok(())
    }

    // Accessors for Debian boards (validated, so present).
    pub fn kernel(&self) -> &Kernel {
        self.kernel.as_ref().expect("validated debian board")
    }
    pub fn debian(&self) -> &Debian {
        self.debian.as_ref().expect("validated debian board")
    }
    pub fn disk(&self) -> &Disk {
        self.disk.as_ref().expect("validated debian board")
    }
    pub fn boot_part(&self) -> &Partition {
        &self.disk().partitions[0]
    }
    pub fn root_part(&self) -> &Partition {
        &self.disk().partitions[1]
    }
    /// `console=` arguments in the board's order (the last one is /dev/console).
    pub fn console_args(&self) -> String {
        self.kernel()
            .consoles
            .iter()
            .map(|c| format!("console={c}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
    /// The Debian architecture's QEMU name (for binfmt).
    pub fn is_foreign(&self) -> bool {
        self.base == "debian" && self.arch != "amd64"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> String {
        std::fs::read_to_string(dir().join(format!("{name}.toml"))).unwrap()
    }

    fn parse_named(name: &str, text: &str) -> Result<Board, BoardError> {
        parse(Path::new(&format!("board-configs/{name}.toml")), text)
    }

    /// The shipped x86_64 board with one line replaced (the line must exist).
    fn x86_with(old: &str, new: &str) -> Result<Board, BoardError> {
        let text = shipped("x86_64");
        assert!(text.contains(old), "x86_64.toml has no {old:?}");
        parse_named("x86_64", &text.replacen(old, new, 1))
    }

    #[test]
    fn every_shipped_debian_board_parses() {
        for name in ["x86_64", "rpi3"] {
            let b = parse_named(name, &shipped(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(b.name, name);
            assert_eq!(b.base, "debian");
        }
        let x = load("x86_64").unwrap();
        assert_eq!(x.rust_target, "x86_64-unknown-linux-gnu");
        assert_eq!(x.disk().table, "gpt");
        assert_eq!(x.root_part().label, "SPINROOT");
        assert!(x.console_args().ends_with("console=ttyS0,115200"));
        let r = load("rpi3").unwrap();
        assert_eq!(r.rust_target, "aarch64-unknown-linux-musl");
        assert_eq!(r.disk().table, "mbr");
        assert_eq!(r.boot_part().label, "RASPIFIRM");
        assert_eq!(r.root_part().label, "RASPIROOT");
        assert!(r.is_foreign());
    }

    #[test]
    fn openwrt_fields_parse() {
        let text = r#"
description = "GL.iNet GL-MT3000"
base = "openwrt"
release = "24.10.0"
arch = "aarch64_cortex-a53"
rust_target = "aarch64-unknown-linux-musl"
outputs = ["ipk", "overlay", "sysupgrade"]
[network]
wan = "eth0"
lan = ["lan1"]
[openwrt]
profile = "glinet_gl-mt3000"
target = "mediatek"
subtarget = "filogic"
imagebuilder_url = "https://downloads.openwrt.org/x.tar.zst"
imagebuilder_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
packages = ["kmod-nft-queue"]
"#;
        let b = parse_named("glinet-mt3000", text).unwrap();
        assert_eq!(
            b.openwrt.unwrap().profile.as_deref(),
            Some("glinet_gl-mt3000")
        );
        let e = parse_named("glinet-mt3000", &text.replace("\"ipk\"", "\"qcow2\"")).unwrap_err();
        assert_eq!(e.field, "outputs[0]");
        assert!(
            e.message.contains("allowed: ipk, overlay, sysupgrade"),
            "{e}"
        );
        let e = parse_named(
            "glinet-mt3000",
            &text.replace("profile = \"glinet_gl-mt3000\"\n", ""),
        )
        .unwrap_err();
        assert_eq!(e.field, "openwrt.profile");
    }

    #[test]
    fn errors_name_the_file_the_field_and_what_is_allowed() {
        let e = x86_with("table = \"gpt\"", "table = \"apm\"").unwrap_err();
        assert_eq!(e.field, "disk.table");
        assert_eq!(
            e.to_string(),
            "board-configs/x86_64.toml: field `disk.table`: \"apm\" is not allowed; allowed: gpt, mbr"
        );
        let e = x86_with("base = \"debian\"", "base = \"yocto\"").unwrap_err();
        assert_eq!(e.field, "base");
        assert!(e.message.contains("allowed: debian, openwrt"));
        let e = x86_with("\"qcow2\"", "\"vdi\"").unwrap_err();
        assert_eq!(e.field, "outputs[1]");
        assert!(e.message.contains("allowed: img.xz, qcow2, ova"), "{e}");
        let e = x86_with("fs = \"ext4\"", "fs = \"btrfs\"").unwrap_err();
        assert_eq!(e.field, "disk.partitions[1].fs");
        assert!(e.message.contains("allowed: vfat, ext4"));
        let e = x86_with("label = \"SPINBOOT\"", "label = \"spin-boot-partition\"").unwrap_err();
        assert_eq!(e.field, "disk.partitions[0].label");
        let e = x86_with("size_mib = 128", "size_mib = 8").unwrap_err();
        assert_eq!(e.field, "disk.partitions[0].size_mib");
        assert!(e.message.contains("64..=65536"));
        let e = x86_with(
            "rust_target = \"x86_64-unknown-linux-gnu\"",
            "rust_target = \"aarch64-unknown-linux-musl\"",
        )
        .unwrap_err();
        assert_eq!(e.field, "rust_target");
        assert!(e.message.contains("x86_64-unknown-linux-gnu"), "{e}");
        let e = x86_with("wan = \"eth0\"", "wan = \"eth1\"").unwrap_err();
        assert_eq!(e.field, "network.lan[0]");
        assert!(e.message.contains("also the WAN"));
        let e = x86_with("wan = \"eth0\"", "wan = \"a very long name!\"").unwrap_err();
        assert_eq!(e.field, "network.wan");
        let e = x86_with(
            "bootloader = \"syslinux+systemd-boot\"",
            "bootloader = \"raspi-firmware\"",
        )
        .unwrap_err();
        assert_eq!(e.field, "disk.table");
        assert!(e.message.contains("needs table = \"mbr\""));
        let e = x86_with("cmdline = \"", "cmdline = \"root=/dev/sda2 ").unwrap_err();
        assert_eq!(e.field, "kernel.cmdline");
        let e = x86_with("\"linux-image-amd64\",", "").unwrap_err();
        assert_eq!(e.field, "debian.packages");
        assert!(e.message.contains("linux-image-amd64"));
        let e = x86_with("\"nftables\"", "\"Not A Package\"").unwrap_err();
        assert!(e.field.starts_with("debian.packages["), "{e}");
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let e = x86_with("[network]", "colour = \"red\"\n[network]").unwrap_err();
        assert_eq!(e.file, Path::new("board-configs/x86_64.toml"));
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        assert!(e.message.contains("expected one of"), "{e}");
        let e = x86_with("rust_target = \"x86_64-unknown-linux-gnu\"\n", "").unwrap_err();
        assert!(e.message.contains("missing field `rust_target`"), "{e}");
        let e = x86_with("size_mib = 128", "size_mib = \"big\"").unwrap_err();
        assert!(
            e.message.contains("size_mib") || e.message.contains("line"),
            "{e}"
        );
        assert!(e.message.contains("invalid type"), "{e}");
        let e = parse_named("bad name", &shipped("x86_64")).unwrap_err();
        assert!(e.message.contains("file name"), "{e}");
    }

    #[test]
    fn debian_tables_are_required_for_debian_boards() {
        let text = shipped("x86_64");
        let cut = text.find("[kernel]").unwrap();
        let e = parse_named("x86_64", &text[..cut]).unwrap_err();
        assert_eq!(e.field, "kernel");
        assert!(e.message.contains("needs a [kernel] table"));
    }

    #[test]
    fn unknown_board_lists_the_boards() {
        let e = load("no-such-board").unwrap_err();
        assert!(e.contains("x86_64") && e.contains("rpi3"), "{e}");
    }
}
