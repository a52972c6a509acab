//! Board files: `board-configs/NAME.toml`, everything board-specific about an image.
//!
//! Adding a board is adding a file. One format for every board, Debian and OpenWrt alike, read
//! into a [`Board`]: an enum tagged by `base`, each variant a struct that takes only its own keys
//! (`deny_unknown_fields`, so a typo is an error naming the key), with enums for every closed set
//! of values ([`values`]). Which tables a board needs depends on `base`: `[kernel]`, `[debian]`
//! and `[disk]` with `base = "debian"` (and no `[openwrt]`); `[openwrt]` with `base = "openwrt"`
//! (and none of the Debian ones). Every key:
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
//! components = ["main"]                        # main | contrib | non-free | non-free-firmware
//! packages = ["linux-image-amd64", "systemd-sysv"]
//! path_exclude = ["/usr/share/man/*"]          # dpkg --path-exclude globs (never unpacked)
//! path_include = ["/usr/share/doc/*/copyright"] # dpkg --path-include: exceptions to the above
//!
//! [wifi]                                       # debian only, optional: the radio as access point
//! interface = "wlan0"                          # hostapd serves it, bridged into br-lan
//! firmware_package = "firmware-brcm80211"      # installed with hostapd
//! band = "2.4"                                 # 2.4 | 5 (GHz)
//! channel = 6                                  # a channel of the band (2.4: 1-13)
//! country = "NL"                               # ISO 3166-1 alpha-2 until the user sets theirs
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
//!
//! Errors name the file, the field (a dotted path such as `disk.partitions[1].fs`) and what is
//! allowed; structural errors (unknown or missing keys, wrong types, bad TOML) are the TOML
//! reader's, which name the key and the line.

mod debian;
mod openwrt;
pub mod values;
mod wifi;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;

pub use debian::{DebianBoard, DebianSettings, Disk, Kernel, Partition};
pub use openwrt::{OpenWrtBoard, OpenWrtSettings};
pub use values::*;
pub use wifi::{country_ok, Wifi, WIFI_PACKAGES};

/// A validated board file.
#[derive(Clone, Debug)]
pub enum Board {
    Debian(DebianBoard),
    OpenWrt(OpenWrtBoard),
}

impl Board {
    pub fn name(&self) -> &str {
        match self {
            Board::Debian(b) => &b.name,
            Board::OpenWrt(b) => &b.name,
        }
    }
    pub fn file(&self) -> &Path {
        match self {
            Board::Debian(b) => &b.file,
            Board::OpenWrt(b) => &b.file,
        }
    }
    pub fn base(&self) -> Base {
        match self {
            Board::Debian(_) => Base::Debian,
            Board::OpenWrt(_) => Base::OpenWrt,
        }
    }
    pub fn description(&self) -> &str {
        match self {
            Board::Debian(b) => &b.description,
            Board::OpenWrt(b) => &b.description,
        }
    }
    pub fn rust_target(&self) -> &str {
        match self {
            Board::Debian(b) => &b.rust_target,
            Board::OpenWrt(b) => &b.rust_target,
        }
    }
    pub fn network(&self) -> &Network {
        match self {
            Board::Debian(b) => &b.network,
            Board::OpenWrt(b) => &b.network,
        }
    }
}

/// `[network]`: the same for both bases.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub wan: String,
    pub lan: Vec<String>,
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
            write!(f, "{}: field `{}`: {}", self.file.display(), self.field, self.message)
        }
    }
}

impl std::error::Error for BoardError {}

/// Makes [`BoardError`]s for one file.
pub(crate) struct Errors<'a>(pub &'a Path);

impl Errors<'_> {
    pub fn err(&self, field: impl Into<String>, message: impl Into<String>) -> BoardError {
        BoardError { file: self.0.to_path_buf(), field: field.into(), message: message.into() }
    }
}

/// Where board files live.
pub fn dir() -> PathBuf {
    crate::paths::root().join("board-configs")
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

/// A shipped Debian board, for the tests of the modules that build from one.
#[cfg(test)]
pub(crate) fn debian_for_tests(name: &str) -> DebianBoard {
    match load(name).unwrap() {
        Board::Debian(b) => b,
        Board::OpenWrt(_) => panic!("{name} is not a Debian board"),
    }
}

/// Reads and validates `board-configs/NAME.toml`.
pub fn load(name: &str) -> anyhow::Result<Board> {
    let file = dir().join(format!("{name}.toml"));
    if !file.exists() {
        anyhow::bail!("no board {name:?}: {} does not exist (boards: {})", file.display(), names().join(", "));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    Ok(parse(&file, &text)?)
}

/// The tag and which tables the file has: read first, so a table of the other base, or a
/// missing one, is named as such (and not as an unknown or missing key).
#[derive(Deserialize)]
struct Tag {
    base: Base,
    kernel: Option<IgnoredAny>,
    debian: Option<IgnoredAny>,
    disk: Option<IgnoredAny>,
    openwrt: Option<IgnoredAny>,
}

/// Reads the whole text as a `T`; a value error names its field, a structural one is the TOML
/// reader's message (with the line).
///
/// Why not `#[serde(tag = "base")]` on [`Board`]: serde's internally tagged enums buffer the
/// document before choosing the variant, which loses both the TOML reader's line numbers and
/// the field paths; reading the tag first and then the variant keeps both.
fn read<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, BoardError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        match inner.message().strip_prefix(values::VALUE_ERROR) {
            Some(message) => BoardError { file: file.to_path_buf(), field, message: message.to_string() },
            None => BoardError {
                file: file.to_path_buf(),
                field: String::new(),
                // The reader's message names the key (unknown field / missing field / wrong
                // type) and the line.
                message: inner.to_string().trim_end().replace('\n', "\n    "),
            },
        }
    })
}

/// Parses and validates a board file's text; `file` names it in errors and gives the board name.
pub fn parse(file: &Path, text: &str) -> Result<Board, BoardError> {
    let errors = Errors(file);
    let tag: Tag = read(file, text)?;
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(errors.err("", "the file name must be NAME.toml with NAME made of letters, digits, - and _"));
    }
    match tag.base {
        Base::Debian => {
            if tag.openwrt.is_some() {
                return Err(errors.err("openwrt", "only allowed with base = \"openwrt\""));
            }
            for (table, present) in [("kernel", &tag.kernel), ("debian", &tag.debian), ("disk", &tag.disk)] {
                if present.is_none() {
                    return Err(errors.err(table, format!("missing: a debian board needs a [{table}] table")));
                }
            }
            let mut b: DebianBoard = read(file, text)?;
            b.name = name;
            b.file = file.to_path_buf();
            b.validate(&errors)?;
            Ok(Board::Debian(b))
        }
        Base::OpenWrt => {
            for (table, present) in [("kernel", &tag.kernel), ("debian", &tag.debian), ("disk", &tag.disk)] {
                if present.is_some() {
                    return Err(errors.err(table, "only allowed with base = \"debian\""));
                }
            }
            if tag.openwrt.is_none() {
                return Err(errors.err(
                    "openwrt",
                    "missing: an openwrt board needs an [openwrt] table (target, subtarget, profile, package_arch, imagebuilder_url, imagebuilder_sha256)",
                ));
            }
            let mut b: OpenWrtBoard = read(file, text)?;
            b.name = name;
            b.file = file.to_path_buf();
            b.validate(&errors)?;
            Ok(Board::OpenWrt(b))
        }
    }
}

// ---- checks shared by both bases --------------------------------------------------------------

pub(crate) fn check_description(e: &Errors, description: &str) -> Result<(), BoardError> {
    if description.trim().is_empty() || description.contains('\n') {
        return Err(e.err("description", "must be one non-empty line"));
    }
    Ok(())
}

pub(crate) fn check_release_present(e: &Errors, release: &str) -> Result<(), BoardError> {
    if release.trim().is_empty() {
        return Err(e.err(
            "release",
            "must not be empty (debian: a suite such as bookworm; openwrt: a version such as 24.10.0)",
        ));
    }
    Ok(())
}

/// A plausible Rust target triple for Linux.
pub(crate) fn check_rust_target(e: &Errors, t: &str) -> Result<(), BoardError> {
    if t.split('-').count() < 3 || t.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        return Err(
            e.err("rust_target", format!("{t:?} is not a Rust target triple (such as aarch64-unknown-linux-musl)"))
        );
    }
    if !t.contains("-linux-") {
        return Err(e.err("rust_target", format!("{t:?}: spind runs on Linux; the target must be a *-linux-* triple")));
    }
    Ok(())
}

/// At least one output, none twice.
pub(crate) fn check_outputs<T: PartialEq + fmt::Display>(
    e: &Errors,
    outputs: &[T],
    allowed: &[&str],
) -> Result<(), BoardError> {
    if outputs.is_empty() {
        return Err(e.err("outputs", format!("must list at least one of: {}", allowed.join(", "))));
    }
    for (i, o) in outputs.iter().enumerate() {
        if outputs[..i].contains(o) {
            return Err(e.err(format!("outputs[{i}]"), format!("{:?} is listed twice", o.to_string())));
        }
    }
    Ok(())
}

pub(crate) fn check_network(e: &Errors, n: &Network) -> Result<(), BoardError> {
    let ok =
        |n: &str| !n.is_empty() && n.len() <= 15 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    const WHAT: &str = "an interface name of 1-15 letters, digits, '-', '_' or '.'";
    if !ok(&n.wan) {
        return Err(e.err("network.wan", format!("{:?} is not {WHAT}", n.wan)));
    }
    if n.lan.is_empty() {
        return Err(e.err("network.lan", "must list at least one LAN port"));
    }
    for (i, l) in n.lan.iter().enumerate() {
        if !ok(l) {
            return Err(e.err(format!("network.lan[{i}]"), format!("{l:?} is not {WHAT}")));
        }
        if *l == n.wan {
            return Err(e.err(format!("network.lan[{i}]"), format!("{l:?} is also the WAN interface")));
        }
        if l == "br-lan" {
            return Err(e.err(format!("network.lan[{i}]"), "br-lan is the LAN bridge itself; list its ports"));
        }
    }
    Ok(())
}
