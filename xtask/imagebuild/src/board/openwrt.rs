//! `base = "openwrt"`: spind as an OpenWrt package, an ImageBuilder overlay and image.

use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::values::{OpenWrtArch, OpenWrtOutput};
use super::{BoardError, Errors, Network};

/// An OpenWrt board file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenWrtBoard {
    /// The file's stem; not written in the file.
    #[serde(skip)]
    pub name: String,
    /// Where it was read from (for messages).
    #[serde(skip)]
    pub file: PathBuf,
    pub description: String,
    /// The tag, read (and checked) by [`super::parse`] before this struct.
    #[serde(rename = "base")]
    _base: IgnoredAnyEq,
    /// The OpenWrt release (`24.10.7`).
    pub release: String,
    pub arch: OpenWrtArch,
    pub rust_target: String,
    pub outputs: Vec<OpenWrtOutput>,
    pub network: Network,
    pub openwrt: OpenWrtSettings,
}

/// [`IgnoredAny`] that compares equal (boards are compared in tests).
#[derive(Clone, Debug, Default)]
struct IgnoredAnyEq;

impl PartialEq for IgnoredAnyEq {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<'de> Deserialize<'de> for IgnoredAnyEq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| IgnoredAnyEq)
    }
}

impl PartialEq for Network {
    fn eq(&self, o: &Self) -> bool {
        self.wan == o.wan && self.lan == o.lan
    }
}

/// `[openwrt]`: the ImageBuilder and the package.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenWrtSettings {
    pub target: String,
    pub subtarget: String,
    pub profile: String,
    pub package_arch: String,
    /// Added to the ImageBuilder's PACKAGES; `-name` removes a default package.
    #[serde(default)]
    pub packages: Vec<String>,
    pub imagebuilder_url: String,
    /// `None` (written `""`) when no checksum could be verified: a download is then refused.
    #[serde(deserialize_with = "empty_is_none")]
    pub imagebuilder_sha256: Option<String>,
}

fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    Ok((!s.is_empty()).then_some(s))
}

impl OpenWrtBoard {
    /// The ImageBuilder tarball's file name.
    pub fn imagebuilder_file(&self) -> &str {
        self.openwrt.imagebuilder_url.rsplit('/').next().unwrap_or_default()
    }

    /// The board file as messages name it.
    pub fn file_name(&self) -> String {
        self.file.display().to_string()
    }

    pub(crate) fn validate(&self, e: &Errors) -> Result<(), BoardError> {
        super::check_description(e, &self.description)?;
        super::check_release_present(e, &self.release)?;
        super::check_rust_target(e, &self.rust_target)?;
        if self.rust_target != self.arch.rust_target() {
            return Err(e.err(
                "rust_target",
                format!(
                    "{:?} does not fit arch {:?}: allowed: {} (OpenWrt's C library is musl)",
                    self.rust_target,
                    self.arch.as_str(),
                    self.arch.rust_target()
                ),
            ));
        }
        super::check_outputs(e, &self.outputs, OpenWrtOutput::NAMES)?;
        if !self.outputs.contains(&OpenWrtOutput::Ipk) {
            return Err(
                e.err("outputs", "an openwrt board must list \"ipk\" (the overlay and the image are built from it)")
            );
        }
        super::check_network(e, &self.network)?;
        let release_ok = self.release.split('.').count() >= 2
            && self
                .release
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '-' || c.is_ascii_lowercase()));
        if !release_ok {
            return Err(e.err(
                "release",
                format!("{:?} is not an OpenWrt release: allowed: a version such as \"24.10.7\"", self.release),
            ));
        }
        let o = &self.openwrt;
        let ident_ok = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        for (key, value, allowed) in [
            ("target", &o.target, "an OpenWrt target such as \"mediatek\" or \"ath79\""),
            ("subtarget", &o.subtarget, "an OpenWrt subtarget such as \"filogic\" or \"generic\""),
            ("profile", &o.profile, "an ImageBuilder profile such as \"glinet_gl-mt3000\" (`make info` lists them)"),
            ("package_arch", &o.package_arch, "an OpenWrt package architecture such as \"aarch64_cortex-a53\""),
        ] {
            if !ident_ok(value) {
                return Err(e.err(format!("openwrt.{key}"), format!("{value:?} is not allowed; allowed: {allowed}")));
            }
        }
        let prefix = format!("{}_", self.arch);
        if !o.package_arch.starts_with(&prefix) {
            return Err(e.err(
                "openwrt.package_arch",
                format!(
                    "{:?} does not fit arch {:?}: allowed: a package architecture {prefix}... (such as {})",
                    o.package_arch,
                    self.arch.as_str(),
                    self.arch.example_package_arch()
                ),
            ));
        }
        for (i, p) in o.packages.iter().enumerate() {
            let n = p.strip_prefix('-').unwrap_or(p);
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c)) {
                return Err(e.err(
                    format!("openwrt.packages[{i}]"),
                    format!("{p:?} is not allowed; allowed: an OpenWrt package name, optionally with a leading '-' to remove a default package"),
                ));
            }
        }
        let url = &o.imagebuilder_url;
        let expect_name =
            format!("openwrt-imagebuilder-{}-{}-{}.Linux-x86_64.tar.", self.release, o.target, o.subtarget);
        let url_name = url.rsplit('/').next().unwrap_or("");
        if !url.starts_with("https://")
            || !url_name.starts_with(&expect_name)
            || !(url_name.ends_with(".tar.zst") || url_name.ends_with(".tar.xz"))
        {
            return Err(e.err(
                "openwrt.imagebuilder_url",
                format!("{url:?} is not allowed; allowed: an https URL of {expect_name}zst (or .xz), matching release, openwrt.target and openwrt.subtarget"),
            ));
        }
        if let Some(sha) = &o.imagebuilder_sha256 {
            if !(sha.len() == 64 && sha.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))) {
                return Err(e.err(
                    "openwrt.imagebuilder_sha256",
                    format!("{sha:?} is not allowed; allowed: 64 lowercase hex digits, or \"\" when no checksum could be verified (downloads are then refused)"),
                ));
            }
        }
        Ok(())
    }
}

impl OpenWrtBoard {
    /// Reads and validates `board-configs/NAME.toml`; it must be an OpenWrt board.
    pub fn load(name: &str) -> anyhow::Result<OpenWrtBoard> {
        OpenWrtBoard::from_board(super::load(name)?)
    }

    /// The OpenWrt board, or an error naming the file if it is not one.
    pub fn from_board(b: super::Board) -> anyhow::Result<OpenWrtBoard> {
        match b {
            super::Board::OpenWrt(b) => Ok(b),
            super::Board::Debian(b) => Err(anyhow::anyhow!(
                "{}: field `base`: \"debian\" is not an OpenWrt board (this builder takes base = \"openwrt\")",
                b.file.display()
            )),
        }
    }
}
