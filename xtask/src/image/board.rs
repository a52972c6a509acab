//! Board files: `board-configs/NAME.toml`, everything board-specific about an image.
//!
//! Adding a board is adding a file. One format for every board, Debian and OpenWrt alike
//! (`deny_unknown_fields`, so a typo is an error naming the key). Which tables a board needs
//! depends on `base`: `[kernel]`, `[debian]` and `[disk]` with `base = "debian"` (and no
//! `[openwrt]`); `[openwrt]` with `base = "openwrt"` (and none of the Debian ones). Every key:
//!
//! ```toml
//! description = "PC, QEMU and VirtualBox"      # one line, shown by `cargo xtask image --list`
//! base = "debian"                              # debian | openwrt
//! release = "bookworm"                         # debian: a Debian suite; openwrt: a version "24.10.7"
//! arch = "amd64"                               # debian: amd64 | arm64; openwrt: aarch64 | mips | mipsel
//! rust_target = "x86_64-unknown-linux-gnu"     # what spind is built for (must match arch; openwrt: musl)
//! outputs = ["img.xz", "qcow2", "ova"]         # debian: img.xz qcow2 ova; openwrt: ipk (required) overlay sysupgrade
//!
//! [network]                                    # debian: configured by the image; openwrt: informational
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
//! [openwrt]                                    # openwrt only (the ImageBuilder and the .ipk)
//! target = "mediatek"                          # OpenWrt target
//! subtarget = "filogic"                        # OpenWrt subtarget
//! profile = "glinet_gl-mt3000"                 # ImageBuilder PROFILE (`make info` lists them)
//! package_arch = "aarch64_cortex-a53"          # the .ipk's Architecture; starts with "ARCH_"
//! packages = ["luci", "-dnsmasq"]              # added to PACKAGES; "-name" removes a default one
//! imagebuilder_url = "https://downloads.openwrt.org/releases/24.10.7/targets/mediatek/filogic/openwrt-imagebuilder-24.10.7-mediatek-filogic.Linux-x86_64.tar.zst"
//!                                              # must name release, target and subtarget
//! imagebuilder_sha256 = "86ba33...0e2d"        # 64 lowercase hex digits, or "" when none could be
//!                                              # verified (a download is then refused)
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

/// OpenWrt settings: the ImageBuilder and the package (read by [`super::openwrt`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenWrt {
    pub target: String,
    pub subtarget: String,
    pub profile: String,
    pub package_arch: String,
    /// Added to the ImageBuilder's PACKAGES; `-name` removes a default package.
    #[serde(default)]
    pub packages: Vec<String>,
    pub imagebuilder_url: String,
    /// "" when no checksum could be verified (a download is then refused).
    pub imagebuilder_sha256: String,
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
pub const OPENWRT_ARCHES: &[&str] = super::openwrt::Arch::NAMES;
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
            if self.outputs[..i].contains(o) {
                return Err(self.err(format!("outputs[{i}]"), format!("{o:?} is listed twice")));
            }
        }
        if self.base == "openwrt" && !self.outputs.iter().any(|o| o == "ipk") {
            return Err(self.err(
                "outputs",
                "an openwrt board must list \"ipk\" (the overlay and the image are built from it)",
            ));
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
        } else {
            self.one_of("arch", &self.arch, OPENWRT_ARCHES)?;
            let arch = super::openwrt::Arch::parse(&self.arch).expect("one of OPENWRT_ARCHES");
            if t != arch.rust_target() {
                return Err(self.err(
                    "rust_target",
                    format!(
                        "{t:?} does not fit arch {:?}: allowed: {} (OpenWrt's C library is musl)",
                        self.arch,
                        arch.rust_target()
                    ),
                ));
            }
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
                "missing: an openwrt board needs an [openwrt] table (target, subtarget, profile, package_arch, imagebuilder_url, imagebuilder_sha256)",
            )
        })?;
        let release_ok = self.release.split('.').count() >= 2
            && self.release.split('.').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_digit() || c == '-' || c.is_ascii_lowercase())
            });
        if !release_ok {
            return Err(self.err(
                "release",
                format!(
                    "{:?} is not an OpenWrt release: allowed: a version such as \"24.10.7\"",
                    self.release
                ),
            ));
        }
        let ident_ok = |v: &str| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        for (key, value, allowed) in [
            (
                "target",
                &o.target,
                "an OpenWrt target such as \"mediatek\" or \"ath79\"",
            ),
            (
                "subtarget",
                &o.subtarget,
                "an OpenWrt subtarget such as \"filogic\" or \"generic\"",
            ),
            (
                "profile",
                &o.profile,
                "an ImageBuilder profile such as \"glinet_gl-mt3000\" (`make info` lists them)",
            ),
            (
                "package_arch",
                &o.package_arch,
                "an OpenWrt package architecture such as \"aarch64_cortex-a53\"",
            ),
        ] {
            if !ident_ok(value) {
                return Err(self.err(
                    format!("openwrt.{key}"),
                    format!("{value:?} is not allowed; allowed: {allowed}"),
                ));
            }
        }
        let prefix = format!("{}_", self.arch);
        if !o.package_arch.starts_with(&prefix) {
            return Err(self.err(
                "openwrt.package_arch",
                format!(
                    "{:?} does not fit arch {:?}: allowed: a package architecture {prefix}... (such as {})",
                    o.package_arch,
                    self.arch,
                    match self.arch.as_str() {
                        "aarch64" => "aarch64_cortex-a53",
                        "mips" => "mips_24kc",
                        _ => "mipsel_24kc",
                    }
                ),
            ));
        }
        for (i, p) in o.packages.iter().enumerate() {
            let n = p.strip_prefix('-').unwrap_or(p);
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
            {
                return Err(self.err(
                    format!("openwrt.packages[{i}]"),
                    format!("{p:?} is not allowed; allowed: an OpenWrt package name, optionally with a leading '-' to remove a default package"),
                ));
            }
        }
        let url = &o.imagebuilder_url;
        let expect_name = format!(
            "openwrt-imagebuilder-{}-{}-{}.Linux-x86_64.tar.",
            self.release, o.target, o.subtarget
        );
        let url_name = url.rsplit('/').next().unwrap_or("");
        if !url.starts_with("https://")
            || !url_name.starts_with(&expect_name)
            || !(url_name.ends_with(".tar.zst") || url_name.ends_with(".tar.xz"))
        {
            return Err(self.err(
                "openwrt.imagebuilder_url",
                format!("{url:?} is not allowed; allowed: an https URL of {expect_name}zst (or .xz), matching release, openwrt.target and openwrt.subtarget"),
            ));
        }
        let sha = &o.imagebuilder_sha256;
        if !(sha.is_empty()
            || (sha.len() == 64
                && sha
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))))
        {
            return Err(self.err(
                "openwrt.imagebuilder_sha256",
                format!("{sha:?} is not allowed; allowed: 64 lowercase hex digits, or \"\" when no checksum could be verified (downloads are then refused)"),
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
    fn every_shipped_board_parses() {
        let names = names();
        for name in [
            "x86_64",
            "rpi3",
            "glinet-mt3000",
            "glinet-mt6000",
            "glinet-ar150",
        ] {
            assert!(names.contains(&name.to_string()), "{name} not in {names:?}");
        }
        for name in &names {
            let b = parse_named(name, &shipped(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&b.name, name);
        }
    }

    #[test]
    fn shipped_debian_boards() {
        for name in ["x86_64", "rpi3"] {
            let b = parse_named(name, &shipped(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(b.name, name);
            assert_eq!(b.base, "debian");
            assert!(b.openwrt.is_none());
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
    fn shipped_openwrt_boards() {
        for name in ["glinet-mt3000", "glinet-mt6000", "glinet-ar150"] {
            let b = load(name).unwrap();
            assert_eq!(b.base, "openwrt");
            assert_eq!(b.release, "24.10.7");
            assert!(b.kernel.is_none() && b.debian.is_none() && b.disk.is_none());
            let o = b.openwrt.as_ref().unwrap();
            assert_eq!(
                o.profile,
                format!("glinet_gl-{}", name.trim_start_matches("glinet-"))
            );
            assert_eq!(o.imagebuilder_sha256.len(), 64, "{name}: pinned sha256");
            assert!(o.packages.contains(&"luci".to_string()));
        }
        let ar150 = load("glinet-ar150").unwrap();
        assert_eq!(
            (ar150.arch.as_str(), ar150.rust_target.as_str()),
            ("mips", "mips-unknown-linux-musl")
        );
        assert_eq!(ar150.openwrt.unwrap().package_arch, "mips_24kc");
        let mt6000 = load("glinet-mt6000").unwrap();
        assert_eq!(mt6000.network.wan, "eth1");
        assert_eq!(mt6000.network.lan.len(), 5);
    }

    /// The shipped AR150 board with one piece of text replaced (which must exist).
    fn ar150_with(old: &str, new: &str) -> Result<Board, BoardError> {
        let text = shipped("glinet-ar150");
        assert!(text.contains(old), "glinet-ar150.toml has no {old:?}");
        parse_named("glinet-ar150", &text.replacen(old, new, 1))
    }

    /// Each broken OpenWrt board gives an error naming the file, the field and what is allowed.
    #[test]
    fn openwrt_errors_name_the_field_and_what_is_allowed() {
        // (replace, with, field ("" for structural errors), the message contains)
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                "arch = \"mips\"",
                "arch = \"riscv\"",
                "arch",
                &["\"riscv\"", "allowed: aarch64, mips, mipsel"],
            ),
            (
                "arch = \"mips\"",
                "arch = \"mips64\"",
                "arch",
                &["allowed: aarch64, mips, mipsel"],
            ),
            (
                "rust_target = \"mips-unknown-linux-musl\"",
                "rust_target = \"mips-unknown-linux-gnu\"",
                "rust_target",
                &["allowed: mips-unknown-linux-musl"],
            ),
            (
                "package_arch = \"mips_24kc\"",
                "package_arch = \"aarch64_cortex-a53\"",
                "openwrt.package_arch",
                &["mips_...", "does not fit arch \"mips\""],
            ),
            (
                "profile = \"glinet_gl-ar150\"",
                "profile = \"gl ar150\"",
                "openwrt.profile",
                &["make info"],
            ),
            (
                "target = \"ath79\"",
                "target = \"\"",
                "openwrt.target",
                &["allowed: an OpenWrt target"],
            ),
            (
                "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
                "outputs = [\"ipk\", \"iso\"]",
                "outputs[1]",
                &["\"iso\"", "allowed: ipk, overlay, sysupgrade"],
            ),
            (
                "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
                "outputs = [\"overlay\", \"sysupgrade\"]",
                "outputs",
                &["must list \"ipk\""],
            ),
            (
                "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
                "outputs = [\"ipk\", \"ipk\"]",
                "outputs[1]",
                &["listed twice"],
            ),
            (
                "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
                "outputs = [\"img.xz\"]",
                "outputs[0]",
                &["allowed: ipk, overlay, sysupgrade"],
            ),
            (
                "packages = [",
                "packages = [\"bad name\", ",
                "openwrt.packages[0]",
                &["\"bad name\"", "OpenWrt package name"],
            ),
            (
                "packages = [",
                "packages = [\"-\", ",
                "openwrt.packages[0]",
                &["OpenWrt package name"],
            ),
            (
                "wan = \"eth0\"",
                "wan = \"a-very-long-interface-name\"",
                "network.wan",
                &["1-15"],
            ),
            (
                "lan = [\"eth1\"]",
                "lan = [\"br-lan\"]",
                "network.lan[0]",
                &["list its ports"],
            ),
            (
                "release = \"24.10.7\"",
                "release = \"bookworm\"",
                "release",
                &["not an OpenWrt release", "24.10.7"],
            ),
            (
                "release = \"24.10.7\"",
                "release = \"24.10.6\"",
                "openwrt.imagebuilder_url",
                &["openwrt-imagebuilder-24.10.6-ath79-generic.Linux-x86_64.tar.zst"],
            ),
            (
                "target = \"ath79\"",
                "target = \"ramips\"",
                "openwrt.imagebuilder_url",
                &["ramips-generic"],
            ),
            (
                "imagebuilder_url = \"https",
                "imagebuilder_url = \"http",
                "openwrt.imagebuilder_url",
                &["an https URL"],
            ),
            (
                "imagebuilder_sha256 = \"5cf5",
                "imagebuilder_sha256 = \"XYZ5cf5",
                "openwrt.imagebuilder_sha256",
                &["64 lowercase hex digits"],
            ),
            (
                "imagebuilder_sha256 = \"5cf5b6e2",
                "imagebuilder_sha256 = \"5CF5B6E2",
                "openwrt.imagebuilder_sha256",
                &["64 lowercase hex digits"],
            ),
            // Tables that belong to the other base.
            (
                "[openwrt]",
                "[kernel]\nconsoles = [\"ttyS0\"]\n[openwrt]",
                "kernel",
                &["only allowed with base = \"debian\""],
            ),
            (
                "[openwrt]",
                "[disk]\ntable = \"gpt\"\nbootloader = \"x\"\npartitions = []\n[openwrt]",
                "disk",
                &["only allowed with base = \"debian\""],
            ),
            // Structural errors come from the TOML reader: they name the key and the line.
            (
                "description = ",
                "name = \"glinet-ar150\"\ndescription = ",
                "",
                &["unknown field `name`", "expected one of `description`"],
            ),
            (
                "[openwrt]",
                "[openwrt]\nkernel = \"6.6\"",
                "",
                &["unknown field `kernel`", "expected one of `target`"],
            ),
            (
                "[openwrt]",
                "[openwrt]\nrelease = \"24.10.7\"",
                "",
                &["unknown field `release`"],
            ),
            (
                "subtarget = \"generic\"\n",
                "",
                "",
                &["missing field `subtarget`"],
            ),
            (
                "package_arch = \"mips_24kc\"\n",
                "",
                "",
                &["missing field `package_arch`"],
            ),
            ("wan = \"eth0\"\n", "", "", &["missing field `wan`"]),
            (
                "release = \"24.10.7\"",
                "release = 24",
                "",
                &["invalid type: integer", "line 6"],
            ),
            (
                "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
                "outputs = \"ipk\"",
                "",
                &["invalid type: string"],
            ),
            ("arch = \"mips\"", "arch = \"mips", "", &["line 8"]),
        ];
        for (from, to, field, expect) in cases {
            let e = ar150_with(from, to).expect_err(to);
            assert_eq!(e.file, Path::new("board-configs/glinet-ar150.toml"));
            assert_eq!(e.field, *field, "for {to:?}: {e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with("board-configs/glinet-ar150.toml: "),
                "{shown}"
            );
            for want in *expect {
                assert!(
                    shown.contains(want),
                    "for {to:?}: {shown:?} should contain {want:?}"
                );
            }
        }
        // An empty sha256 is allowed (explicitly unverified): downloads are then refused.
        let b = ar150_with(
            "imagebuilder_sha256 = \"5cf5b6e2",
            "imagebuilder_sha256 = \"\" # \"5cf5b6e2",
        )
        .unwrap();
        assert_eq!(b.openwrt.unwrap().imagebuilder_sha256, "");
        // No [openwrt] table.
        let text = shipped("glinet-ar150");
        let cut = text.find("[openwrt]").unwrap();
        let e = parse_named("glinet-ar150", &text[..cut]).unwrap_err();
        assert_eq!(e.field, "openwrt");
        assert!(e.message.contains("needs an [openwrt] table"), "{e}");
        // .tar.xz ImageBuilders are allowed too.
        ar150_with(".Linux-x86_64.tar.zst", ".Linux-x86_64.tar.xz").unwrap();
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
        let cut = text.find("[disk]").unwrap();
        let e = parse_named("x86_64", &text[..cut]).unwrap_err();
        assert_eq!(e.field, "disk");
        assert!(e.message.contains("needs a [disk] table"));
        let openwrt =
            &shipped("glinet-ar150")[shipped("glinet-ar150").find("[openwrt]").unwrap()..];
        let e = parse_named("x86_64", &format!("{text}\n{openwrt}")).unwrap_err();
        assert_eq!(e.field, "openwrt");
        assert!(
            e.message.contains("only allowed with base = \"openwrt\""),
            "{e}"
        );
        // A Debian board keeps Debian's arch names and suites.
        let e = x86_with("arch = \"amd64\"", "arch = \"aarch64\"").unwrap_err();
        assert_eq!(e.field, "arch");
        assert!(e.message.contains("allowed: amd64, arm64"), "{e}");
        let e = x86_with("release = \"bookworm\"", "release = \"24.10.7\"").unwrap_err();
        assert_eq!(e.field, "release");
    }

    #[test]
    fn unknown_board_lists_the_boards() {
        let e = load("no-such-board").unwrap_err();
        assert!(
            e.contains("x86_64") && e.contains("rpi3") && e.contains("glinet-ar150"),
            "{e}"
        );
    }
}
