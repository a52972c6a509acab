//! `base = "debian"`: a Debian root file system on a disk image of two partitions.

use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::values::{Bootloader, Component, DebianArch, DebianOutput, Fs, Role, Table};
use super::wifi::{Wifi, WIFI_PACKAGES};
use super::{BoardError, Errors, Network};

/// A Debian board file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianBoard {
    /// The file's stem (`x86_64` for `board-configs/x86_64.toml`); not written in the file.
    #[serde(skip)]
    pub name: String,
    /// Where it was read from (for error messages).
    #[serde(skip)]
    pub file: PathBuf,
    pub description: String,
    /// The tag, read (and checked) by [`super::parse`] before this struct.
    #[serde(rename = "base")]
    _base: IgnoredAny,
    /// A Debian suite (`bookworm`).
    pub release: String,
    pub arch: DebianArch,
    pub rust_target: String,
    pub outputs: Vec<DebianOutput>,
    pub network: Network,
    pub kernel: Kernel,
    pub debian: DebianSettings,
    /// `[wifi]`: the radio as an access point; `None`: no WiFi.
    #[serde(default)]
    pub wifi: Option<Wifi>,
    pub disk: Disk,
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

/// `[debian]`: where the packages come from and which.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSettings {
    #[serde(default = "default_mirror")]
    pub mirror: String,
    #[serde(default = "default_components")]
    pub components: Vec<Component>,
    pub packages: Vec<String>,
    #[serde(default)]
    pub path_exclude: Vec<String>,
    #[serde(default)]
    pub path_include: Vec<String>,
}

fn default_mirror() -> String {
    "http://deb.debian.org/debian".into()
}

fn default_components() -> Vec<Component> {
    vec![Component::Main]
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub table: Table,
    pub bootloader: Bootloader,
    pub partitions: Vec<Partition>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub role: Role,
    pub label: String,
    pub fs: Fs,
    pub size_mib: u64,
}

impl DebianBoard {
    /// Checks what the types do not: formats, ranges, and how the values fit together.
    pub(crate) fn validate(&self, e: &Errors) -> Result<(), BoardError> {
        super::check_description(e, &self.description)?;
        super::check_release_present(e, &self.release)?;
        super::check_rust_target(e, &self.rust_target)?;
        let cpu = self.arch.cpu();
        if !self.rust_target.starts_with(&format!("{cpu}-")) {
            return Err(e.err(
                "rust_target",
                format!(
                    "{:?} does not fit arch {:?}: allowed: {cpu}-unknown-linux-gnu or {cpu}-unknown-linux-musl",
                    self.rust_target,
                    self.arch.as_str()
                ),
            ));
        }
        super::check_outputs(e, &self.outputs, DebianOutput::NAMES)?;
        super::check_network(e, &self.network)?;
        if !self.release.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            return Err(e.err("release", format!("{:?} is not a Debian suite name (such as bookworm)", self.release)));
        }
        self.validate_kernel(e)?;
        self.validate_debian(e)?;
        self.validate_disk(e)?;
        if let Some(w) = &self.wifi {
            w.validate(e, &self.network)?;
        }
        if self.outputs.contains(&DebianOutput::Ova) && self.arch != DebianArch::Amd64 {
            return Err(e.err("outputs", "ova (VirtualBox) is only allowed for arch = \"amd64\""));
        }
        Ok(())
    }

    fn validate_kernel(&self, e: &Errors) -> Result<(), BoardError> {
        let kernel = &self.kernel;
        if kernel.consoles.is_empty() {
            return Err(e.err("kernel.consoles", "must list at least one console (such as ttyS0,115200)"));
        }
        for (i, c) in kernel.consoles.iter().enumerate() {
            let dev = c.split(',').next().unwrap_or("");
            if !(dev.starts_with("tty") && dev.len() > 3) || c.contains(char::is_whitespace) {
                return Err(e.err(
                    format!("kernel.consoles[{i}]"),
                    format!("{c:?} is not a console: allowed: ttyNAME[,BAUD] such as tty0 or ttyS0,115200"),
                ));
            }
        }
        for word in kernel.cmdline.split_whitespace() {
            for forbidden in ["root=", "console="] {
                if word.starts_with(forbidden) {
                    return Err(e.err(
                        "kernel.cmdline",
                        format!("{word:?}: {forbidden} is set by the builder (use kernel.consoles for consoles)"),
                    ));
                }
            }
        }
        for (i, m) in kernel.initramfs_modules.iter().enumerate() {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(e.err(format!("kernel.initramfs_modules[{i}]"), format!("{m:?} is not a module name")));
            }
        }
        Ok(())
    }

    fn validate_debian(&self, e: &Errors) -> Result<(), BoardError> {
        let debian = &self.debian;
        if !(debian.mirror.starts_with("http://")
            || debian.mirror.starts_with("https://")
            || debian.mirror.starts_with("file:/"))
        {
            return Err(
                e.err("debian.mirror", format!("{:?}: allowed: an http://, https:// or file:/ URL", debian.mirror))
            );
        }
        if debian.packages.is_empty() {
            return Err(e.err("debian.packages", "must list the packages of the image"));
        }
        for (i, p) in debian.packages.iter().enumerate() {
            let ok = p.len() >= 2
                && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            if !ok {
                return Err(e.err(format!("debian.packages[{i}]"), format!("{p:?} is not a Debian package name")));
            }
        }
        let kernel_pkg = format!("linux-image-{}", self.arch);
        if !debian.packages.contains(&kernel_pkg) {
            return Err(e.err("debian.packages", format!("must contain the kernel ({kernel_pkg})")));
        }
        for (field, globs) in
            [("debian.path_exclude", &debian.path_exclude), ("debian.path_include", &debian.path_include)]
        {
            for (i, g) in globs.iter().enumerate() {
                if !g.starts_with('/') || g.contains(char::is_whitespace) {
                    return Err(e.err(
                        format!("{field}[{i}]"),
                        format!("{g:?}: allowed: an absolute path glob without spaces"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_disk(&self, e: &Errors) -> Result<(), BoardError> {
        let disk = &self.disk;
        let table = disk.bootloader.table();
        if disk.table != table {
            return Err(e.err(
                "disk.table",
                format!("bootloader {:?} needs table = {:?}", disk.bootloader.as_str(), table.as_str()),
            ));
        }
        if disk.partitions.len() != 2 {
            return Err(e.err(
                "disk.partitions",
                "allowed: exactly two partitions, role = \"boot\" (vfat) then role = \"root\" (ext4)",
            ));
        }
        for (i, p) in disk.partitions.iter().enumerate() {
            let f = |k: &str| format!("disk.partitions[{i}].{k}");
            let (want_role, want_fs) = if i == 0 { (Role::Boot, Fs::Vfat) } else { (Role::Root, Fs::Ext4) };
            if p.role != want_role {
                return Err(e.err(
                    f("role"),
                    format!(
                        "partition {} must be role = {:?} (boot first, root last so it can grow)",
                        i + 1,
                        want_role.as_str()
                    ),
                ));
            }
            if p.fs != want_fs {
                return Err(e.err(
                    f("fs"),
                    format!("the {} partition must be fs = {:?}", want_role.as_str(), want_fs.as_str()),
                ));
            }
            let (max_len, upper) = if p.fs == Fs::Vfat { (11, true) } else { (16, false) };
            let label_ok = !p.label.is_empty()
                && p.label.len() <= max_len
                && p.label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && (!upper || !p.label.chars().any(|c| c.is_ascii_lowercase()));
            if !label_ok {
                let what = if upper {
                    "1-11 upper-case letters, digits, '_' or '-'"
                } else {
                    "1-16 letters, digits, '_' or '-'"
                };
                return Err(e.err(f("label"), format!("{:?}: allowed for {}: {what}", p.label, p.fs)));
            }
            let min = if p.fs == Fs::Vfat { 64 } else { 256 };
            if p.size_mib < min || p.size_mib > 64 * 1024 {
                return Err(e.err(f("size_mib"), format!("{}: allowed for {}: {min}..=65536", p.size_mib, p.fs)));
            }
        }
        Ok(())
    }

    pub fn boot_part(&self) -> &Partition {
        &self.disk.partitions[0]
    }
    pub fn root_part(&self) -> &Partition {
        &self.disk.partitions[1]
    }
    /// `console=` arguments in the board's order (the last one is /dev/console).
    pub fn console_args(&self) -> String {
        self.kernel.consoles.iter().map(|c| format!("console={c}")).collect::<Vec<_>>().join(" ")
    }
    /// Built for another architecture than the host's (qemu-user runs its maintainer scripts).
    pub fn is_foreign(&self) -> bool {
        DebianArch::host() != Some(self.arch)
    }
    /// What mmdebstrap installs: `debian.packages`, then for a WiFi board hostapd and the
    /// radio's firmware (each once).
    pub fn packages(&self) -> Vec<String> {
        let mut v = self.debian.packages.clone();
        if let Some(w) = &self.wifi {
            for p in WIFI_PACKAGES.iter().map(|p| p.to_string()).chain([w.firmware_package.clone()]) {
                if !v.contains(&p) {
                    v.push(p);
                }
            }
        }
        v
    }
    pub fn components(&self) -> String {
        self.debian.components.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
    }
}
